import { spawn } from 'node:child_process'
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import app from '../app.js'
import { SchemaOutdatedError } from '../lib/errors.js'
import { serverOptions } from '../lib/server-options.js'
import { createPostgresDriver } from '../plugins/app/supabase/drivers/postgres.js'
import { latestMigration, listMigrations, migrate } from '../plugins/app/supabase/migrate.js'
import { TEST_SECRET, testConfig } from './helpers/app.js'
import { freshDatabase, requireDatabaseUrl, SERVICE_ROLE_KEY, testBackends } from './helpers/backends.js'
import { prepareSupabaseRoles, startPostgrest } from './helpers/postgrest.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const MIGRATIONS = join(ROOT, 'supabase', 'migrations')
const noDatabase = process.env.CI || process.env.TEST_DATABASE_URL ? false : 'TEST_DATABASE_URL is not set'

interface Exit { code: number | null, stdout: string, stderr: string }

/** Starts `server.ts` as `npm start` would (TypeScript loader aside) and waits for it to exit or listen. */
function startServer (t: Test, env: Record<string, string>): Promise<Exit & { listening: boolean }> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'test', JWT_SECRET: TEST_SECRET, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env }
  for (const name of ['NODE_OPTIONS', 'DATABASE_URL', 'SUPABASE_URL', 'SUPABASE_SERVICE_ROLE_KEY', 'REDIS_URL', 'DATA_DIR']) {
    if (!(name in env)) delete childEnv[name]
  }
  const loader = process.execArgv.filter(arg => arg.includes('typescript'))
  const child = spawn(process.execPath, [...loader, join(ROOT, 'server.ts')], { cwd: ROOT, env: childEnv })
  t.after(() => { child.kill('SIGKILL') })
  let stdout = ''
  let stderr = ''
  child.stderr.on('data', chunk => { stderr += chunk })
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.stdout.on('data', chunk => {
      stdout += chunk
      if (/Server listening/.test(stdout)) {
        child.once('close', code => resolve({ code, stdout, stderr, listening: true }))
        child.kill('SIGTERM')
      }
    })
    child.on('close', code => { if (!/Server listening/.test(stdout)) resolve({ code, stdout, stderr, listening: false }) })
  })
}

/** A database whose schema is only the first migration, as a deployment that never migrated since. */
async function oldSchema (t: Test): Promise<string> {
  const url = await freshDatabase(t, requireDatabaseUrl())
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-old-schema-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const first = readdirSync(MIGRATIONS).filter(f => f.endsWith('.sql')).sort()[0]
  copyFileSync(join(MIGRATIONS, first), join(dir, first))
  const driver = createPostgresDriver(url, { timeoutMs: 10_000, max: 1 })
  try {
    await migrate(driver.sql, dir)
  } finally {
    await driver.close()
  }
  return url
}

function assertRefused (t: Test, exit: Exit & { listening: boolean }) {
  t.equal(exit.listening, false, 'never listens')
  t.equal(exit.code, 1, 'exits 1')
  t.match(exit.stderr, /schema is out of date.*`npm run cli -- migrate`/)
  t.equal(exit.stderr.trimEnd().split('\n').length, 1, 'one line on stderr')
  t.notMatch(exit.stderr, /\n\s+at /, 'no stack trace')
}

t.test('a server on a Postgres database older than its migrations refuses to start', { skip: noDatabase }, async t => {
  t.test('no schema at all', async t => {
    assertRefused(t, await startServer(t, { DATABASE_URL: await freshDatabase(t, requireDatabaseUrl()) }))
  })
  t.test('an earlier schema', async t => {
    assertRefused(t, await startServer(t, { DATABASE_URL: await oldSchema(t) }))
  })
  t.test('after `migrate` it starts', async t => {
    const url = await oldSchema(t)
    const driver = createPostgresDriver(url, { timeoutMs: 10_000, max: 1 })
    await migrate(driver.sql)
    await driver.close()
    const exit = await startServer(t, { DATABASE_URL: url })
    t.equal(exit.listening, true, exit.stderr)
  })
})

t.test('a server on a Supabase project with an earlier schema refuses to start', { skip: noDatabase }, async t => {
  const url = await oldSchema(t)
  const driver = createPostgresDriver(url, { timeoutMs: 10_000, max: 2 })
  t.after(() => driver.close())
  await prepareSupabaseRoles(driver.sql)
  const postgrest = await startPostgrest(driver.sql)
  t.after(() => postgrest.close())
  assertRefused(t, await startServer(t, { SUPABASE_URL: postgrest.url, SUPABASE_SERVICE_ROLE_KEY: SERVICE_ROLE_KEY }))
})

for (const backend of testBackends()) {
  t.test(`on ${backend.name}, the app checks the schema version at start`, { skip: backend.skip }, async t => {
    const start = async (t: Test) => {
      const { driver, sql } = await backend.open(t)
      const build = async () => {
        const server = Fastify(serverOptions(testConfig()))
        t.after(() => server.close())
        await server.register(app, { config: testConfig(), driver })
        await server.ready()
      }
      return { sql, build }
    }

    t.test('a migrated store starts', async t => {
      await t.resolves((await start(t)).build())
    })
    t.test('a store without the version function is too old', async t => {
      const { sql, build } = await start(t)
      await sql.exec('drop function gatehouse_schema_version()')
      // The embedded store migrates itself, so only the server backends can be behind.
      if (backend.name === 'pglite') await t.resolves(build())
      else await t.rejects(build(), SchemaOutdatedError)
    })
    t.test('a store at an earlier version is too old; a later one is fine', async t => {
      const { sql, build } = await start(t)
      await sql.exec("create or replace function gatehouse_schema_version() returns jsonb language sql as $$ select jsonb_build_object('version', '20000101000000') $$")
      if (backend.name !== 'pglite') await t.rejects(build(), { message: /version 20000101000000, this gatehouse needs \d{14}/ })
      await sql.exec("create or replace function gatehouse_schema_version() returns jsonb language sql as $$ select jsonb_build_object('version', '29990101000000') $$")
      await t.resolves(build())
    })
  })
}

t.test('the newest migration declares its own version in gatehouse_schema_version()', async t => {
  const latest = await latestMigration()
  const newest = (await listMigrations()).find(m => m.version === latest)!
  t.match(readFileSync(newest.file, 'utf8'), new RegExp(`function gatehouse_schema_version\\(\\)[\\s\\S]*'version', '${latest}'`),
    'every new migration must replace gatehouse_schema_version() with its version')
})
