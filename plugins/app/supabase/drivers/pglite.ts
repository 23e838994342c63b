import { PGlite, type PGliteOptions, type Transaction } from '@electric-sql/pglite'
import { callStatement, type RpcDriver, type SqlAccess } from '../driver.js'
import { lockDataDir } from '../../../../lib/data-dir-lock.js'

/**
 * Postgres settings for the embedded store. PGlite's defaults size it like a server
 * (128 MB shared buffers, large WAL); one process serving one service needs far less,
 * and every page of it is resident memory: Postgres touches all of shared_buffers as
 * it starts (each MB of it is a MB of the store process's RSS, measured with `npm run
 * bench:startup-memory`). The tables live in DATA_DIR's files, which the OS caches.
 */
export const EMBEDDED_START_PARAMS = [
  '-c', 'shared_buffers=8MB',
  '-c', 'work_mem=2MB',
  '-c', 'maintenance_work_mem=16MB',
  '-c', 'wal_buffers=1MB',
  '-c', 'min_wal_size=32MB',
  '-c', 'max_wal_size=64MB'
]

/** Opens PGlite on DATA_DIR (null: in memory), from a dump when `loadDataDir` is given. */
export async function openPglite (dataDir: string | null, loadDataDir?: Blob): Promise<PGlite> {
  const options: PGliteOptions = {
    dataDir: dataDir ?? undefined,
    loadDataDir,
    startParams: [...PGlite.defaultStartParams, ...EMBEDDED_START_PARAMS]
  }
  return await PGlite.create(options)
}

/**
 * Embedded Postgres (WASM) in this process; data under DATA_DIR, or in memory.
 * The service runs it in a process of its own (embedded.ts); this in-process form
 * serves that process, migrations tooling and tests' PostgREST stand-in.
 * `loadDataDir` starts from a dump (tests reuse one migrated database this way).
 */
export async function createPgliteDriver (dataDir: string | null, loadDataDir?: Blob): Promise<RpcDriver & { sql: SqlAccess, dump (): Promise<Blob> }> {
  // Two processes on one data directory corrupt it: the second one is refused.
  const lock = dataDir ? await lockDataDir(dataDir) : null
  const db = await openPglite(dataDir, loadDataDir).catch(async (error: unknown) => {
    await lock?.release()
    throw error
  })
  let closed = false
  return {
    kind: 'pglite',
    async call (fn, args) {
      if (closed) throw new PgliteClosedError()
      const { text, values } = callStatement(fn, args)
      const { rows } = await db.query<{ result: unknown }>(text, values)
      return rows[0]?.result ?? null
    },
    sql: pgliteAccess(db),
    isUnavailable: (error) => error instanceof PgliteClosedError || (error instanceof Error && /^PGlite is clos(ed|ing)$/.test(error.message)),
    async dump () { return await db.dumpDataDir('none') },
    async close () {
      if (closed) return
      closed = true
      await db.close()
      await lock?.release()
    }
  }
}

export function pgliteAccess (db: PGlite): SqlAccess {
  return {
    async exec (script) { await db.exec(script) },
    async query<T> (text: string, values: unknown[] = []) { return (await db.query<T>(text, values)).rows },
    async transaction (fn) { return await db.transaction(async tx => await fn(transactionAccess(tx))) }
  }
}

function transactionAccess (tx: Transaction): SqlAccess {
  const access: SqlAccess = {
    async exec (script) { await tx.exec(script) },
    async query<T> (text: string, values: unknown[] = []) { return (await tx.query<T>(text, values)).rows },
    // Already inside a transaction: nested work joins it.
    async transaction (fn) { return await fn(access) }
  }
  return access
}

class PgliteClosedError extends Error {
  constructor () { super('embedded store is closed') }
}
