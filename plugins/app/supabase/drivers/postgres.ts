import postgres from 'postgres'
import { callStatement, isUnavailableSqlState, type RpcDriver, type SqlAccess } from '../driver.js'

const NETWORK_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'EAI_AGAIN',
  'CONNECT_TIMEOUT', 'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED'])

type Values = postgres.ParameterOrJSON<never>[]

/** A Postgres server (Supabase's own connection string works too) through a postgres.js pool. */
export function createPostgresDriver (url: string, { timeoutMs, max = 10 }: { timeoutMs: number, max?: number }): RpcDriver & { sql: SqlAccess } {
  const sql = postgres(url, {
    max,
    connect_timeout: Math.max(1, Math.ceil(timeoutMs / 1000)),
    idle_timeout: 30,
    // postgres.js waits up to 20 s between reconnections after failures; a recovered
    // server should be noticed within a second.
    backoff: (retries: number) => Math.min(0.05 * 2 ** retries, 1),
    onnotice: () => {},
    // The server gives up on a statement shortly after we stop waiting for it.
    connection: { statement_timeout: timeoutMs + 1000, application_name: 'gatehouse' }
  })
  let closed: Promise<void> | undefined
  return {
    kind: 'postgres',
    async call (fn, args, signal) {
      const { text, values } = callStatement(fn, args)
      const query = sql.unsafe(text, values as Values)
      // Only a query still waiting for a connection is withdrawn: cancelling one the server
      // is running opens a second connection whose failure postgres.js leaves unhandled.
      // statement_timeout ends those on the server instead.
      const cancel = () => { if (!(query as unknown as { state: unknown }).state) query.cancel() }
      signal.addEventListener('abort', cancel, { once: true })
      try {
        const rows = await query
        return rows[0]?.result ?? null
      } finally {
        signal.removeEventListener('abort', cancel)
      }
    },
    sql: access(sql, sql.begin.bind(sql)),
    isUnavailable (error) {
      const code = (error as { code?: unknown })?.code
      return isUnavailableSqlState(code) || NETWORK_ERRORS.has(String(code))
    },
    async close () {
      closed ??= sql.end({ timeout: 5 })
      await closed
    }
  }
}

function access (sql: postgres.Sql | postgres.TransactionSql, begin?: postgres.Sql['begin']): SqlAccess {
  const self: SqlAccess = {
    async exec (script) { await sql.unsafe(script) },
    async query<T> (text: string, values: unknown[] = []) { return await sql.unsafe(text, values as Values) as unknown as T[] },
    async transaction<T> (fn: (tx: SqlAccess) => Promise<T>): Promise<T> {
      // Already inside a transaction: nested work joins it.
      if (!begin) return await fn(self)
      return await begin(async tx => await fn(access(tx))) as T
    }
  }
  return self
}
