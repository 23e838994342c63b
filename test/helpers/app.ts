import { rmSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import app from '../../app.js'
import { loadConfig, type Config, type StoreBackend } from '../../lib/config.js'
import { serverOptions } from '../../lib/server-options.js'
import { createEmbeddedDriver, type EmbeddedDriver } from '../../plugins/app/supabase/drivers/embedded.js'
import { createPgliteDriver } from '../../plugins/app/supabase/drivers/pglite.js'
import { migrate } from '../../plugins/app/supabase/migrate.js'
import type { RpcDriver, SqlAccess } from '../../plugins/app/supabase/driver.js'
import type { User, UserInput } from '../../schemas/users.js'
import { prepareSupabaseRoles } from './postgrest.js'

export const TEST_SECRET = 'test-secret-test-secret-test-secret-0123456789'

/** A validated config for tests: in-memory embedded store unless `store` says otherwise. */
export function testConfig (env: Record<string, string> = {}, store: StoreBackend = { kind: 'pglite', dataDir: null }): Config {
  const config = loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    JWT_SECRET: TEST_SECRET,
    RATE_LIMIT_MAX: '100000',
    ...env
  })
  return { ...config, store }
}

const migratedDumps = new Map<boolean, Promise<Blob>>()
/**
 * A fresh in-memory embedded store, migrated. Creating PGlite costs seconds, so the
 * first one is dumped and every later one in this process starts from that dump.
 * `supabase`: with Supabase's roles and default privileges in place before migrating,
 * for the PostgREST stand-in.
 */
export async function freshPglite ({ supabase = false }: { supabase?: boolean } = {}): Promise<RpcDriver & { sql: SqlAccess }> {
  let dump = migratedDumps.get(supabase)
  if (!dump) {
    dump = (async () => {
      const template = await createPgliteDriver(null)
      if (supabase) await prepareSupabaseRoles(template.sql)
      await migrate(template.sql)
      const blob = await template.dump()
      await template.close()
      return blob
    })()
    migratedDumps.set(supabase, dump)
  }
  return await createPgliteDriver(null, await dump)
}

let dumpFile: Promise<string> | undefined
/**
 * A fresh embedded store as the service runs it: in a process of its own, in memory,
 * started from the migrated dump. `timeoutMs`: the store timeout it enforces.
 */
export async function freshEmbedded (timeoutMs = 10_000): Promise<EmbeddedDriver> {
  dumpFile ??= (async () => {
    await freshPglite().then(driver => driver.close())
    const file = join(tmpdir(), `gatehouse-test-store-${process.pid}.tar`)
    await writeFile(file, Buffer.from(await (await migratedDumps.get(false))!.arrayBuffer()))
    process.once('exit', () => { try { rmSync(file, { force: true }) } catch {} })
    return file
  })()
  return await createEmbeddedDriver({ dataDir: null, loadDataDir: await dumpFile, timeoutMs })
}

export interface BuildOptions {
  env?: Record<string, string>
  store?: StoreBackend
  config?: Config
  /** A storage driver; default: a fresh in-memory embedded store, unless `store` names a backend. */
  driver?: RpcDriver
  /** Extra Fastify options, e.g. a logger stream to inspect. */
  server?: Parameters<typeof serverOptions>[1]
}

/** Builds the real application, ready for inject(); closed when the test ends. */
export async function buildApp (t: Test, options: BuildOptions = {}): Promise<FastifyInstance> {
  const config = options.config ?? testConfig(options.env, options.store)
  const server = Fastify(serverOptions(config, options.server))
  const driver = options.driver ?? (options.store || options.config ? undefined : await freshEmbedded(config.STORE_TIMEOUT_MS))
  // A driver made here is the app's: it closes it.
  await server.register(app, { config, driver })
  await server.ready()
  t.after(() => server.close())
  return server
}

let userCounter = 0
/** Creates a user directly in the store. */
export async function createUser (server: FastifyInstance, input: UserInput = {}): Promise<User> {
  userCounter++
  const user = await server.store.upsertUser({
    id: `user_${process.pid}_${userCounter}`,
    email: `user${userCounter}@example.com`,
    name: `User ${userCounter}`,
    organization_id: 'org_1',
    ...input
  })
  if (!user) throw new Error('user conflict')
  return user
}

/** Access token for a user, as the dashboard exchange would issue it. */
export function accessTokenFor (server: FastifyInstance, user: User): string {
  return server.tokens.issueAccess(user).token
}

/** A stored, valid API token for a user. */
export async function apiTokenFor (server: FastifyInstance, user: User, expiresAt: Date | null = null): Promise<{ token: string, id: string }> {
  const id = crypto.randomUUID()
  await server.store.createApiToken({ id, userId: user.id, createdBy: null, name: null, expiresAt: expiresAt?.toISOString() ?? null })
  return { token: server.tokens.issueApi(id, user.id, expiresAt), id }
}
