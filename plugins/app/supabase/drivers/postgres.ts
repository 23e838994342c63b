import postgres from 'postgres'
import { callStatement, isUnavailableSqlState, type RpcDriver } from '../driver.js'

const NETWORK_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'EPIPE',
  'CONNECT_TIMEOUT', 'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED'])

/** A Postgres server (Supabase's own connection string works too) through a postgres.js pool. */
export function createPostgresDriver (url: string, { timeoutMs, max = 10 }: { timeoutMs: number, max?: number }): RpcDriver {
  const sql = postgres(url, {
    max,
    connect_timeout: Math.max(1, Math.ceil(timeoutMs / 1000)),
    idle_timeout: 30,
    onnotice: () => {},
    // The server gives up on a statement shortly after we stop waiting for it.
    connection: { statement_timeout: timeoutMs + 1000, application_name: 'gatehouse' }
  })
  return {
    kind: 'postgres',
    async call (fn, args, signal) {
      const { text, values } = callStatement(fn, args)
      const query = sql.unsafe(text, values as postgres.ParameterOrJSON<never>[])
      const cancel = () => { query.cancel() }
      signal.addEventListener('abort', cancel, { once: true })
      try {
        const rows = await query
        return rows[0]?.result ?? null
      } finally {
        signal.removeEventListener('abort', cancel)
      }
    },
    sql: {
      async exec (script) { await sql.unsafe(script) },
      async query<T> (text: string, values: unknown[] = []) { return await sql.unsafe(text, values as postgres.ParameterOrJSON<never>[]) as unknown as T[] }
    },
    isUnavailable (error) {
      const code = (error as { code?: unknown })?.code
      return isUnavailableSqlState(code) || NETWORK_ERRORS.has(String(code)) || code === '57014'
    },
    async close () { await sql.end({ timeout: 5 }) }
  }
}
