import { randomBytes } from 'node:crypto'
import postgres from 'postgres'
import type { Test } from 'tap'
import type { RpcDriver, SqlAccess } from '../../plugins/app/supabase/driver.js'
import { createPostgresDriver } from '../../plugins/app/supabase/drivers/postgres.js'
import { createSupabaseDriver } from '../../plugins/app/supabase/drivers/supabase.js'
import { migrate } from '../../plugins/app/supabase/migrate.js'
import { freshEmbedded, freshPglite } from './app.js'
import { prepareSupabaseRoles, startPostgrest, supabaseKey } from './postgrest.js'

/**
 * The storage backends a suite runs against:
 *
 * - `pglite`: in-memory embedded store in its own process, as the service runs it (always);
 * - `postgres`: postgres.js on a fresh database of the server at TEST_DATABASE_URL;
 * - `supabase`: the real supabase-js driver talking to a local PostgREST-compatible
 *   endpoint (test/helpers/postgrest.ts), which runs on a fresh Postgres database
 *   when TEST_DATABASE_URL is set and on PGlite otherwise (always), with Supabase's
 *   roles and default privileges, calling as service_role.
 *
 * Usage:
 *
 *   for (const backend of testBackends()) {
 *     t.test(`sends on ${backend.name}`, { skip: backend.skip }, async t => {
 *       const app = await buildApp(t, { driver: await backend.driver(t) })
 *       …
 *     })
 *   }
 *
 * `driver(t)` gives a migrated, empty store of its own; whatever it opened
 * (database, endpoint, connections) is closed and dropped when `t` ends.
 * `open(t)` gives the same plus `sql`, direct SQL on that store's database (for
 * tests that must arrange what no Store method can, such as an old row).
 * `skip` is a reason string when the backend cannot run here (postgres without
 * TEST_DATABASE_URL); with CI set it is never skipped: driver() fails instead.
 */
export interface TestBackend {
  name: 'pglite' | 'postgres' | 'supabase'
  skip: string | false
  driver (t: Test): Promise<RpcDriver>
  open (t: Test): Promise<{ driver: RpcDriver, sql: SqlAccess }>
}

/** The test project's service_role key, a JWT the PostgREST stand-in verifies. */
export const SERVICE_ROLE_KEY = supabaseKey('service_role')
/** Its public anon key: what anyone can read out of a Supabase web app. */
export const ANON_KEY = supabaseKey('anon')

export function testBackends (): TestBackend[] {
  const databaseUrl = process.env.TEST_DATABASE_URL
  const backend = (name: TestBackend['name'], skip: string | false, open: TestBackend['open']): TestBackend =>
    ({ name, skip, open, driver: async t => (await open(t)).driver })
  return [
    backend('pglite', false, async t => {
      const driver = await freshEmbedded()
      t.after(() => driver.close())
      return { driver, sql: driver.sql }
    }),
    backend('postgres', process.env.CI || databaseUrl ? false : 'TEST_DATABASE_URL is not set', async t => {
      const driver = await postgresDriver(t, requireDatabaseUrl())
      return { driver, sql: driver.sql }
    }),
    backend('supabase', false, async t => {
      const { sql } = databaseUrl ? await postgresDriver(t, databaseUrl, { supabase: true }) : await pglite(t, { supabase: true })
      const postgrest = await startPostgrest(sql)
      t.after(() => postgrest.close())
      const driver = createSupabaseDriver(postgrest.url, SERVICE_ROLE_KEY)
      t.after(() => driver.close())
      return { driver, sql }
    })
  ]
}

/** The Postgres server URL, or a failure naming what is missing (CI must not skip). */
export function requireDatabaseUrl (): string {
  const url = process.env.TEST_DATABASE_URL
  if (!url) throw new Error('TEST_DATABASE_URL is not set: the postgres backend cannot be tested')
  return url
}

async function pglite (t: Test, options: { supabase?: boolean } = {}): Promise<{ driver: RpcDriver, sql: SqlAccess }> {
  const driver = await freshPglite(options)
  t.after(() => driver.close())
  return { driver, sql: driver.sql }
}

/** postgres.js on a fresh migrated database of the server (`supabase`: prepared as a Supabase project first). */
export async function postgresDriver (t: Test, serverUrl: string, { supabase = false } = {}) {
  const driver = createPostgresDriver(await freshDatabase(t, serverUrl), { timeoutMs: 10_000, max: 4 })
  t.after(() => driver.close())
  if (supabase) await prepareSupabaseRoles(driver.sql)
  await migrate(driver.sql)
  return driver
}

let databases = 0
/**
 * Creates an empty database on the server and returns its URL; it is dropped,
 * with any connection still open to it, when the test ends.
 */
export async function freshDatabase (t: Test, serverUrl: string): Promise<string> {
  const name = `gatehouse_test_${process.pid}_${++databases}_${randomBytes(3).toString('hex')}`
  await withAdmin(serverUrl, admin => admin.unsafe(`create database ${name}`))
  t.after(() => withAdmin(serverUrl, admin => admin.unsafe(`drop database if exists ${name} with (force)`)))
  const url = new URL(serverUrl)
  url.pathname = `/${name}`
  return url.toString()
}

async function withAdmin<T> (serverUrl: string, fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {}, connect_timeout: 10 })
  try {
    return await fn(admin)
  } finally {
    await admin.end({ timeout: 5 })
  }
}
