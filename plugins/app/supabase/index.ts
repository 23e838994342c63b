import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { StoreBackend } from '../../../lib/config.js'
import type { RpcDriver } from './driver.js'
import { createPgliteDriver } from './drivers/pglite.js'
import { createPostgresDriver } from './drivers/postgres.js'
import { createSupabaseDriver } from './drivers/supabase.js'
import { migrate, pendingMigrations } from './migrate.js'
import { Store } from './store.js'

declare module 'fastify' {
  interface FastifyInstance {
    store: Store
  }
}

export async function createDriver (backend: StoreBackend, timeoutMs: number): Promise<RpcDriver> {
  switch (backend.kind) {
    case 'pglite': return await createPgliteDriver(backend.dataDir)
    case 'postgres': return createPostgresDriver(backend.url, { timeoutMs })
    case 'supabase': return createSupabaseDriver(backend.url, backend.serviceRoleKey)
  }
}

/**
 * Storage. The embedded store migrates itself at start; a server's schema is
 * migrated by the operator (`npm run cli -- migrate`), and a server missing
 * migrations is reported at start rather than failing on first use.
 */
export default fp(async function supabase (fastify: FastifyInstance, opts: { driver?: RpcDriver }) {
  const { config } = fastify
  const driver = opts.driver ?? await createDriver(config.store, config.STORE_TIMEOUT_MS)
  fastify.addHook('onClose', async () => { await driver.close() })

  if (driver.kind === 'pglite' && driver.sql) {
    const applied = await migrate(driver.sql)
    if (applied.length > 0) fastify.log.info({ applied }, 'embedded store migrated')
  } else if (driver.sql) {
    const pending = await pendingMigrations(driver.sql).catch(() => null)
    if (pending?.length) fastify.log.warn({ pending }, 'database has unapplied migrations: run `npm run cli -- migrate`')
  }

  const store = new Store(driver, config.STORE_TIMEOUT_MS)
  fastify.decorate('store', store)
  fastify.log.info({ backend: driver.kind }, 'storage ready')
}, { name: 'supabase', dependencies: ['env'] })
