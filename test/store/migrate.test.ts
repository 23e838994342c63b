import { spawn } from 'node:child_process'
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath, pathToFileURL } from 'node:url'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import type { SqlAccess } from '../../plugins/app/supabase/driver.js'
import { createPgliteDriver } from '../../plugins/app/supabase/drivers/pglite.js'
import { createPostgresDriver } from '../../plugins/app/supabase/drivers/postgres.js'
import { listMigrations, LOCK_KEY, migrate, pendingMigrations } from '../../plugins/app/supabase/migrate.js'
import { freshDatabase, requireDatabaseUrl } from '../helpers/backends.js'

const noDatabase = process.env.CI || process.env.TEST_DATABASE_URL ? false : 'TEST_DATABASE_URL is not set'

/** Unmigrated databases: the embedded store always, a Postgres server when there is one. */
const databases: Array<{ name: string, skip: string | false, open (t: Test): Promise<SqlAccess> }> = [
  {
    name: 'pglite',
    skip: false,
    async open (t) {
      const driver = await createPgliteDriver(null)
      t.after(() => driver.close())
      return driver.sql
    }
  },
  {
    name: 'postgres',
    skip: noDatabase,
    async open (t) {
      const driver = createPostgresDriver(await freshDatabase(t, requireDatabaseUrl()), { timeoutMs: 10_000 })
      t.after(() => driver.close())
      return driver.sql
    }
  }
]

/** The project's migrations plus `extra` files, in a directory removed after the test. */
async function migrationsWith (t: Test, extra: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-migrations-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  for (const migration of await listMigrations()) await copyFile(migration.file, join(dir, migration.file.split('/').pop()!))
  for (const [file, script] of Object.entries(extra)) await writeFile(join(dir, file), script)
  return dir
}

const exists = async (sql: SqlAccess, table: string) =>
  (await sql.query<{ found: boolean }>('select to_regclass($1) is not null as found', [table]))[0].found

for (const database of databases) {
  t.test(`migrations on ${database.name}`, { skip: database.skip }, async t => {
    const sql = await database.open(t)
    const versions = (await listMigrations()).map(m => m.version)
    t.ok(versions.length > 0)

    t.same(await pendingMigrations(sql), versions, 'an empty database lacks every migration')
    t.same(await migrate(sql), versions, 'the first run applies them')
    t.same(await migrate(sql), [], 'the second run applies nothing')
    t.same(await pendingMigrations(sql), [])
    t.match(await sql.query('select gatehouse_health() as health'), [{ health: { ok: true } }], 'the schema works')

    const dir = await migrationsWith(t, { '20990101000000_probe.sql': 'create table gatehouse_probe (id int);' })
    t.same(await pendingMigrations(sql, dir), ['20990101000000'], 'a new migration is reported missing')
    t.same(await migrate(sql, dir), ['20990101000000'])
    t.ok(await exists(sql, 'gatehouse_probe'))
    t.same(await pendingMigrations(sql, dir), [])

    const broken = await migrationsWith(t, {
      '20990101000000_probe.sql': 'create table gatehouse_probe (id int);',
      '20990102000000_broken.sql': 'create table gatehouse_half_done (id int);\nselect 1 / 0;'
    })
    await t.rejects(migrate(sql, broken), { message: /division by zero/ })
    t.notOk(await exists(sql, 'gatehouse_half_done'), 'a failing migration leaves nothing behind')
    t.same(await pendingMigrations(sql, broken), ['20990102000000'], 'and is still missing')
  })
}

/** Runs migrate() in a child process against `url`; resolves with the versions it applied. */
function migrateInChild (url: string): { exited: () => boolean, result: Promise<string[]> } {
  const module = (path: string) => pathToFileURL(fileURLToPath(new URL(path, import.meta.url))).href
  const code = `
    import { createPostgresDriver } from '${module('../../plugins/app/supabase/drivers/postgres.js')}'
    import { migrate } from '${module('../../plugins/app/supabase/migrate.js')}'
    const driver = createPostgresDriver(process.env.MIGRATE_URL, { timeoutMs: 500, max: 2 })
    try { console.log(JSON.stringify(await migrate(driver.sql))) } finally { await driver.close() }`
  // Keep only the TypeScript loader the test itself runs under.
  const loader = process.execArgv.filter(arg => arg.includes('typescript'))
  const child = spawn(process.execPath, [...loader, '--input-type=module', '-e', code], {
    env: { ...process.env, MIGRATE_URL: url },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  let err = ''
  let done = false
  child.stdout.on('data', chunk => { out += chunk })
  child.stderr.on('data', chunk => { err += chunk })
  const result = new Promise<string[]>((resolve, reject) => {
    child.on('close', code => {
      done = true
      if (code === 0) resolve(JSON.parse(out.trim().split('\n').pop()!))
      else reject(new Error(`migrating child exited with ${code}: ${err}`))
    })
  })
  result.catch(() => {})
  return { exited: () => done, result }
}

t.test('two processes migrating at once apply each migration once', { skip: noDatabase }, async t => {
  const url = await freshDatabase(t, requireDatabaseUrl())
  const observer = postgres(url, { max: 1, onnotice: () => {} })
  t.after(() => observer.end({ timeout: 5 }))

  // Hold the migrators' lock so both processes are provably waiting on it at once.
  let release!: () => void
  let locked!: () => void
  const isLocked = new Promise<void>(resolve => { locked = resolve })
  const holder = postgres(url, { max: 1, onnotice: () => {} })
  t.after(() => holder.end({ timeout: 5 }))
  const held = holder.begin(async tx => {
    await tx`select pg_advisory_xact_lock(${LOCK_KEY})`
    locked()
    await new Promise<void>(resolve => { release = resolve })
  })
  await isLocked

  const children = [migrateInChild(url), migrateInChild(url)]
  let waiting = 0
  while (waiting < 2 && !children.some(child => child.exited())) {
    await sleep(50);
    [{ waiting }] = await observer`
      select count(*)::int as waiting from pg_locks
      where locktype = 'advisory' and not granted and database = (select oid from pg_database where datname = current_database())`
  }
  t.equal(waiting, 2, 'both processes wait for the migration lock at once')
  // Longer than the children's statement timeout (their store timeout is 500 ms):
  // waiting for another migrator is not a request that timed out.
  await sleep(2000)
  release()
  await held

  const results = await Promise.all(children.map(child => child.result))
  const versions = (await listMigrations()).map(m => m.version)
  // Each migration takes the lock on its own, so the two may share the work; none is applied twice.
  t.same(results.flat().sort(), versions, 'every migration applied by exactly one of them')
  t.same(await observer`select version from gatehouse_schema_migrations order by version`.then(rows => rows.map(r => r.version)), versions)
  const driver = createPostgresDriver(url, { timeoutMs: 10_000, max: 1 })
  t.after(() => driver.close())
  t.same(await pendingMigrations(driver.sql), [])
})
