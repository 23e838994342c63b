import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { migrationsDir } from '../../../lib/paths.js'
import type { SqlAccess } from './driver.js'

export interface Migration { version: string, file: string }

export async function listMigrations (dir = migrationsDir): Promise<Migration[]> {
  const files = (await readdir(dir)).filter(f => /^\d+_.+\.sql$/.test(f)).sort()
  return files.map(file => ({ version: file.split('_')[0], file: join(dir, file) }))
}

/**
 * Applies the migrations not yet recorded, each in its own transaction under an
 * advisory lock. Two processes migrating at once may both run a script, one after
 * the other, so scripts are written to be re-runnable (`if not exists`, `or replace`).
 * Returns the versions applied.
 */
export async function migrate (sql: SqlAccess, dir = migrationsDir): Promise<string[]> {
  await sql.exec(`create table if not exists gatehouse_schema_migrations (
    version text primary key, applied_at timestamptz not null default now())`)
  const applied: string[] = []
  for (const migration of await listMigrations(dir)) {
    const script = await readFile(migration.file, 'utf8')
    const version = migration.version.replace(/[^0-9]/g, '')
    const done = await sql.query<{ version: string }>('select version from gatehouse_schema_migrations where version = $1', [version])
    if (done.length > 0) continue
    await sql.exec(`begin;
      select pg_advisory_xact_lock(727274);
      ${script}
      ;insert into gatehouse_schema_migrations (version) values ('${version}') on conflict do nothing;
      commit;`)
    applied.push(version)
  }
  return applied
}

export async function pendingMigrations (sql: SqlAccess, dir = migrationsDir): Promise<string[]> {
  const rows = await sql.query<{ exists: boolean }>("select to_regclass('gatehouse_schema_migrations') is not null as exists")
  const all = (await listMigrations(dir)).map(m => m.version)
  if (!rows[0]?.exists) return all
  const done = new Set((await sql.query<{ version: string }>('select version from gatehouse_schema_migrations')).map(r => r.version))
  return all.filter(v => !done.has(v))
}
