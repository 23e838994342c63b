import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createClient } from '@supabase/supabase-js'
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import type { SqlAccess } from '../../plugins/app/supabase/driver.js'
import { listMigrations, migrate } from '../../plugins/app/supabase/migrate.js'
import { freshPglite } from '../helpers/app.js'
import { ANON_KEY, postgresDriver, SERVICE_ROLE_KEY } from '../helpers/backends.js'
import { startPostgrest, supabaseKey } from '../helpers/postgrest.js'

// A Supabase project's anon key is public (it ships in every web client). With
// Supabase's default privileges, every table and function we create would be granted
// to it: the migrations must take that back, and nothing may reach our data but the
// service role.

const noDatabase = process.env.CI || process.env.TEST_DATABASE_URL ? false : 'TEST_DATABASE_URL is not set'

/** Databases prepared as a Supabase project (roles, default privileges), then migrated. */
const databases: Array<{ name: string, skip: string | false, open (t: Test): Promise<SqlAccess> }> = [
  {
    name: 'pglite',
    skip: false,
    async open (t) {
      const driver = await freshPglite({ supabase: true })
      t.after(() => driver.close())
      return driver.sql
    }
  },
  {
    name: 'postgres',
    skip: noDatabase,
    async open (t) {
      return (await postgresDriver(t, process.env.TEST_DATABASE_URL!, { supabase: true })).sql
    }
  }
]

const PUBLIC_ROLES = ['anon', 'authenticated'] as const

async function ourTables (sql: SqlAccess) {
  return await sql.query<{ name: string, rls: boolean }>(`
    select relname as name, relrowsecurity as rls from pg_class
    where relnamespace = 'public'::regnamespace and relkind in ('r', 'p') order by relname`)
}

async function ourFunctions (sql: SqlAccess) {
  return await sql.query<{ signature: string, name: string, args: Array<{ name: string }>, config: string[] | null }>(`
    select p.oid::regprocedure::text as signature, p.proname as name, p.proconfig as config,
      (select coalesce(json_agg(json_build_object('name', a.name) order by a.ord), '[]')
       from unnest(coalesce(p.proargnames, '{}')) with ordinality as a(name, ord)) as args
    from pg_proc p where p.pronamespace = 'public'::regnamespace and p.proname like 'gatehouse\\_%' order by 1`)
}

/** Runs `text` as `role` in a transaction that is rolled back; the error it raised, or null. */
async function asRole (sql: SqlAccess, role: string, text: string): Promise<{ code?: string } | null> {
  return await sql.transaction(async tx => {
    await tx.exec(`set local role ${role}`)
    await tx.query(text)
    throw new Error('rolled back')
  }).then(() => null, (error: { code?: string, message?: string }) => error.message === 'rolled back' ? null : error)
}

for (const database of databases) {
  t.test(`the schema is sealed on ${database.name}`, { skip: database.skip }, async t => {
    const sql = await database.open(t)
    const tables = await ourTables(sql)
    const functions = await ourFunctions(sql)
    t.ok(tables.length >= 7, 'users, api_tokens, templates, message_bodies, messages, idempotency_keys and the migration record')
    t.ok(functions.length >= 20)

    t.test('every table has row level security and grants nothing to anon or authenticated', async t => {
      for (const table of tables) {
        t.ok(table.rls, `${table.name}: row level security on`)
        for (const role of PUBLIC_ROLES) {
          const [{ any }] = await sql.query<{ any: boolean }>(
            "select has_table_privilege($1, $2::regclass, 'select, insert, update, delete, truncate, references, trigger') as any", [role, table.name])
          t.equal(any, false, `${table.name}: nothing for ${role}`)
        }
        const [{ crud }] = await sql.query<{ crud: boolean }>(
          "select has_table_privilege('service_role', $1::regclass, 'select') and has_table_privilege('service_role', $1::regclass, 'insert') and has_table_privilege('service_role', $1::regclass, 'update') and has_table_privilege('service_role', $1::regclass, 'delete') as crud", [table.name])
        t.ok(crud, `${table.name}: service_role reads and writes`)
      }
      const sequences = await sql.query<{ name: string, anon: boolean, authenticated: boolean }>(`
        select relname as name, has_sequence_privilege('anon', oid, 'usage, select, update') as anon,
          has_sequence_privilege('authenticated', oid, 'usage, select, update') as authenticated
        from pg_class where relnamespace = 'public'::regnamespace and relkind = 'S'`)
      t.ok(sequences.length > 0, 'the message sequence')
      for (const sequence of sequences) t.same([sequence.anon, sequence.authenticated], [false, false], sequence.name)
    })

    t.test('every gatehouse function runs only for service_role, with a pinned search_path', async t => {
      for (const fn of functions) {
        const [privileges] = await sql.query<{ anon: boolean, authenticated: boolean, service: boolean, public: boolean }>(`
          select has_function_privilege('anon', $1::regprocedure, 'execute') as anon,
            has_function_privilege('authenticated', $1::regprocedure, 'execute') as authenticated,
            has_function_privilege('service_role', $1::regprocedure, 'execute') as service,
            exists (select 1 from pg_proc p, aclexplode(p.proacl) a where p.oid = $1::regprocedure and a.grantee = 0) as public`, [fn.signature])
        t.same(privileges, { anon: false, authenticated: false, service: true, public: false }, fn.signature)
        t.same(fn.config, ['search_path=public, pg_temp'], `${fn.name}: search_path pinned`)
      }
    })

    t.test('anon and authenticated are refused by every table and sequence', async t => {
      for (const role of PUBLIC_ROLES) {
        for (const table of tables) {
          t.match(await asRole(sql, role, `select * from ${table.name} limit 1`), { code: '42501' }, `${role} reads ${table.name}`)
          t.match(await asRole(sql, role, `delete from ${table.name}`), { code: '42501' }, `${role} deletes from ${table.name}`)
        }
        t.match(await asRole(sql, role, "select nextval(pg_get_serial_sequence('messages', 'seq'))"), { code: '42501' })
        t.match(await asRole(sql, role, "select gatehouse_user_upsert('{\"id\": \"intruder\", \"role\": \"admin\"}')"), { code: '42501' })
      }
      t.same(await sql.query("select id from users where id = 'intruder'"), [], 'no admin was made')
      t.equal(await asRole(sql, 'service_role', 'select * from users limit 1'), null, 'service_role reads')
    })

    t.test('through the API, an anon or authenticated key is refused by every function', async t => {
      const postgrest = await startPostgrest(sql)
      t.after(() => postgrest.close())
      const client = (key: string, bearer = key) => createClient(postgrest.url, key, {
        auth: { persistSession: false, autoRefreshToken: false },
        global: { headers: { authorization: `Bearer ${bearer}` } },
        realtime: { transport: WebSocket as never }
      })
      const anon = client(ANON_KEY)
      const signedIn = client(ANON_KEY, supabaseKey('authenticated'))
      const service = client(SERVICE_ROLE_KEY)
      t.after(() => Promise.all([anon, signedIn, service].map(c => c.removeAllChannels())))

      for (const fn of functions) {
        const args = Object.fromEntries(fn.args.map(a => [a.name, null]))
        const refused = await anon.rpc(fn.name, args)
        t.match(refused, { data: null, status: 401, error: { code: '42501' } }, `anon: ${fn.name}`)
        t.match(await signedIn.rpc(fn.name, args), { data: null, status: 403, error: { code: '42501' } }, `authenticated: ${fn.name}`)
      }
      const upsert = await anon.rpc('gatehouse_user_upsert', { p_user: { id: 'intruder', role: 'admin' } })
      t.match(upsert, { status: 401, error: { code: '42501' } })
      t.same(await sql.query("select id from users where id = 'intruder'"), [], 'no admin was made')
      t.match(await service.rpc('gatehouse_health'), { status: 200, data: { ok: true } }, 'the service role is served')
    })
  })
}

/** The project's migrations plus `extra` files, in a directory removed after the test. */
async function migrationsWith (t: Test, extra: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-migrations-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  for (const migration of await listMigrations()) await copyFile(migration.file, join(dir, migration.file.split('/').pop()!))
  for (const [file, script] of Object.entries(extra)) await writeFile(join(dir, file), script)
  return dir
}

for (const database of databases) {
  t.test(`a later migration that ends with gatehouse_seal() is sealed too, on ${database.name}`, { skip: database.skip }, async t => {
    const sql = await database.open(t)
    // Someone else's table in the same schema, created outside our migrations: left alone.
    await sql.exec('create table other_app_notes (id int); insert into other_app_notes values (1)')
    const dir = await migrationsWith(t, {
      '20990101000000_more.sql': `
        create table later_feature_rows (id int primary key generated always as identity, body text);
        create or replace function gatehouse_later_feature_count() returns jsonb language sql stable as
          $$ select jsonb_build_object('count', count(*)) from later_feature_rows $$;
        select gatehouse_seal();`
    })
    t.same(await migrate(sql, dir), ['20990101000000'])

    t.match(await asRole(sql, 'anon', 'select * from later_feature_rows'), { code: '42501' }, 'the new table')
    t.match(await asRole(sql, 'anon', 'select gatehouse_later_feature_count()'), { code: '42501' }, 'the new function')
    t.match(await asRole(sql, 'anon', "select nextval(pg_get_serial_sequence('later_feature_rows', 'id'))"), { code: '42501' }, 'the new sequence')
    t.same(await sql.query("select relrowsecurity as rls from pg_class where oid = 'later_feature_rows'::regclass"), [{ rls: true }])
    t.equal(await asRole(sql, 'service_role', 'select gatehouse_later_feature_count()'), null, 'service_role calls it')
    t.equal(await asRole(sql, 'anon', 'select * from other_app_notes'), null, 'a table that is not ours keeps its grants')

    const again = await sql.query<{ sealed: { tables: number, functions: number } }>('select gatehouse_seal() as sealed')
    t.match(again, [{ sealed: { tables: Number, functions: Number } }], 'sealing again is harmless')
    t.equal(await asRole(sql, 'service_role', 'select gatehouse_health()'), null)
  })
}
