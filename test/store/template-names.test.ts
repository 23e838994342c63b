import { copyFile, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import t, { type Test } from 'tap'
import type { SqlAccess } from '../../plugins/app/supabase/driver.js'
import { createPgliteDriver } from '../../plugins/app/supabase/drivers/pglite.js'
import { createPostgresDriver } from '../../plugins/app/supabase/drivers/postgres.js'
import { listMigrations, migrate } from '../../plugins/app/supabase/migrate.js'
import { freshDatabase, requireDatabaseUrl } from '../helpers/backends.js'

const NAMES_MIGRATION = '20261122003000'

/** A database migrated up to, not including, the template-names migration. */
async function beforeNames (t: Test, sql: SqlAccess): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-migrations-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  for (const m of await listMigrations()) if (m.version < NAMES_MIGRATION) await copyFile(m.file, join(dir, basename(m.file)))
  await migrate(sql, dir)
}

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
    skip: process.env.CI || process.env.TEST_DATABASE_URL ? false : 'TEST_DATABASE_URL is not set',
    async open (t) {
      const driver = createPostgresDriver(await freshDatabase(t, requireDatabaseUrl()), { timeoutMs: 10_000 })
      t.after(() => driver.close())
      return driver.sql
    }
  }
]

for (const database of databases) {
  t.test(`existing duplicate template names on ${database.name} do not stop the migration`, { skip: database.skip }, async t => {
    const sql = await database.open(t)
    await beforeNames(t, sql)
    await sql.query('insert into users (id, organization_id) values (\'a\', \'org_1\'), (\'b\', \'org_1\'), (\'c\', null), (\'d\', null)')
    const rows = await sql.query<{ id: string }>(`insert into templates (organization_id, owner_id, name, content, created_at) values
      ('org_1', 'a', 'welcome', 'first', now() - interval '2 days'),
      ('org_1', 'b', 'welcome', 'second', now() - interval '1 day'),
      ('org_2', 'a', 'welcome', 'other org', now()),
      (null, 'c', 'welcome', 'private', now()),
      (null, 'c', 'welcome', 'private again', now() + interval '1 second'),
      (null, 'd', 'welcome', 'someone else''s private', now())
      returning id`)
    const ids = rows.map(r => r.id)

    const fromNames = (await listMigrations()).map(m => m.version).filter(version => version >= NAMES_MIGRATION)
    t.same(await migrate(sql), fromNames, 'the migration applies, with the later ones')
    const after = await sql.query<{ id: string, name: string }>('select id, name from templates')
    const nameOf = (id: string) => after.find(r => r.id === id)?.name
    t.same(ids.map(nameOf), ['welcome', `welcome (${ids[1]})`, 'welcome', 'welcome', `welcome (${ids[4]})`, 'welcome'],
      'the oldest of each scope keeps the name, later ones get their id appended; ids do not change')

    const taken = await sql.query<{ r: unknown }>('select gatehouse_template_create(\'org_1\', \'b\', \'welcome\', \'x\') as r')
    t.same(taken[0].r, { error: 'name_taken' }, 'from now on a scope holds a name once')
  })
}
