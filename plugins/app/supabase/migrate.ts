import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { migrationsDir } from '../../../lib/paths.js'
import type { SqlAccess } from './driver.js'

export interface Migration { version: string, file: string }

export async function listMigrations (dir = migrationsDir): Promise<Migration[]> {
  const files = (await readdir(dir)).filter(f => /^\d+_.+\.sql$/.test(f)).sort()
  return files.map(file => ({ version: file.split('_')[0], file: join(dir, file) }))
}

/** The advisory lock migrators take; exported for tests. */
export const LOCK_KEY = 727274

/**
 * Applies the migrations not yet recorded, each in its own transaction. The
 * transaction first takes an advisory lock and then checks the record again, so
 * two processes migrating at once apply each script exactly once: the second
 * waits for the first and then finds it done. Returns the versions applied.
 */
export async function migrate (sql: SqlAccess, dir = migrationsDir): Promise<string[]> {
  const applied: string[] = []
  for (const migration of await listMigrations(dir)) {
    const script = await readFile(migration.file, 'utf8')
    const ran = await sql.transaction(async tx => {
      // The service's statement timeout is for requests; a migration may wait for another
      // migrator or rewrite a large table.
      await tx.exec('set local statement_timeout = 0')
      await tx.query('select pg_advisory_xact_lock($1)', [LOCK_KEY])
      // Created under the lock: concurrent `create table if not exists` can collide.
      await tx.exec(`create table if not exists gatehouse_schema_migrations (
        version text primary key, applied_at timestamptz not null default now())`)
      const done = await tx.query('select 1 from gatehouse_schema_migrations where version = $1', [migration.version])
      if (done.length > 0) return false
      await tx.exec(script)
      await tx.query('insert into gatehouse_schema_migrations (version) values ($1)', [migration.version])
      return true
    })
    if (ran) applied.push(migration.version)
  }
  return applied
}

/** The newest migration's version: the schema version this code needs. */
export async function latestMigration (dir = migrationsDir): Promise<string> {
  const all = await listMigrations(dir)
  return all[all.length - 1].version
}

export async function pendingMigrations (sql: SqlAccess, dir = migrationsDir): Promise<string[]> {
  const rows = await sql.query<{ exists: boolean }>("select to_regclass('gatehouse_schema_migrations') is not null as exists")
  const all = (await listMigrations(dir)).map(m => m.version)
  if (!rows[0]?.exists) return all
  const done = new Set((await sql.query<{ version: string }>('select version from gatehouse_schema_migrations')).map(r => r.version))
  return all.filter(v => !done.has(v))
}
