import { PGlite } from '@electric-sql/pglite'
import { callStatement, type RpcDriver } from '../driver.js'

/**
 * Embedded Postgres (WASM) in this process; data under DATA_DIR, or in memory.
 * `loadDataDir` starts from a dump (tests reuse one migrated database this way).
 */
export async function createPgliteDriver (dataDir: string | null, loadDataDir?: Blob): Promise<RpcDriver & { dump (): Promise<Blob> }> {
  const db = await PGlite.create({ dataDir: dataDir ?? undefined, loadDataDir })
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
      async query<T> (text: string, values: unknown[] = []) { return (await db.query<T>(text, values)).rows }
    },
    isUnavailable: (error) => error instanceof PgliteClosedError || (error instanceof Error && /closed/i.test(error.message)),
    async dump () { return await db.dumpDataDir('none') },
    async close () {
      if (closed) return
      closed = true
      await db.close()
    }
  }
}

class PgliteClosedError extends Error {
  constructor () { super('embedded store is closed') }
}
