import { PGlite, type Transaction } from '@electric-sql/pglite'
import { callStatement, type RpcDriver, type SqlAccess } from '../driver.js'
import { lockDataDir } from '../../../../lib/data-dir-lock.js'

/**
 * Embedded Postgres (WASM) in this process; data under DATA_DIR, or in memory.
 * `loadDataDir` starts from a dump (tests reuse one migrated database this way).
 */
export async function createPgliteDriver (dataDir: string | null, loadDataDir?: Blob): Promise<RpcDriver & { sql: SqlAccess, dump (): Promise<Blob> }> {
  // Two processes on one data directory corrupt it: the second one is refused.
  const lock = dataDir ? await lockDataDir(dataDir) : null
  const db = await PGlite.create({ dataDir: dataDir ?? undefined, loadDataDir }).catch(async (error: unknown) => {
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
    sql: {
      async exec (script) { await db.exec(script) },
      async query<T> (text: string, values: unknown[] = []) { return (await db.query<T>(text, values)).rows },
      async transaction (fn) { return await db.transaction(async tx => await fn(transactionAccess(tx))) }
    },
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
