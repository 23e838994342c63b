import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { StoreBackend } from '../../../lib/config.js'
import type { RpcDriver } from './driver.js'
import { createEmbeddedDriver } from './drivers/embedded.js'
import { createPostgresDriver } from './drivers/postgres.js'
import { latestMigration, migrate } from './migrate.js'
import { DependencyUnavailableError, SchemaOutdatedError } from '../../../lib/errors.js'
import { Store } from './store.js'

declare module 'fastify' {
  interface FastifyInstance {
    store: Store
  }
}

export async function createDriver (backend: StoreBackend, timeoutMs: number, log?: FastifyInstance['log']): Promise<RpcDriver> {
  switch (backend.kind) {
    case 'pglite': return await createEmbeddedDriver({ dataDir: backend.dataDir, optimize: backend.optimize, timeoutMs, onRestart: reason => log?.error(`${reason}: restarting it`) })
    case 'postgres': return createPostgresDriver(backend.url, { timeoutMs })
    // supabase-js (auth, realtime, storage clients) is loaded only for this backend.
    case 'supabase': return (await import('./drivers/supabase.js')).createSupabaseDriver(backend.url, backend.serviceRoleKey)
  }
}

/**
 * Refuses an old schema. A database that cannot be reached now is let through:
 * the server starts, answers 503 and reports not ready until it comes back.
 */
async function checkSchema (store: Store, log: FastifyInstance['log']): Promise<void> {
  let version: string | null
  try {
    version = await store.schemaVersion()
  } catch (error) {
    if (!(error instanceof DependencyUnavailableError)) throw error
    log.warn({ err: error }, 'could not check the database schema version: the store is unavailable')
    return
  }
  const expected = await latestMigration()
  // Versions are timestamps of the same width: text order is time order. A newer schema is fine (rolling deploys).
  if (version === null || version < expected) throw new SchemaOutdatedError(version, expected)
}

/**
 * Storage. The embedded store migrates itself at start; a server's schema is
 * migrated by the operator (`npm run cli -- migrate`), and a server whose schema
 * is older than this code refuses to start rather than answer 500s.
 */
export default fp(async function supabase (fastify: FastifyInstance, opts: { driver?: RpcDriver }) {
  const { config } = fastify
  const driver = opts.driver ?? await createDriver(config.store, config.STORE_TIMEOUT_MS, fastify.log)
  fastify.addHook('onClose', async () => { await driver.close() })

  const store = new Store(driver, config.STORE_TIMEOUT_MS)
  if (driver.kind === 'pglite' && driver.sql) {
    const applied = [...driver.migratedAtStart ?? [], ...await migrate(driver.sql)]
    if (applied.length > 0) fastify.log.info({ applied }, 'embedded store migrated')
  } else {
    await checkSchema(store, fastify.log)
  }

  fastify.decorate('store', store)
  fastify.log.info({ backend: driver.kind }, 'storage ready')
}, { name: 'supabase', dependencies: ['env'] })
