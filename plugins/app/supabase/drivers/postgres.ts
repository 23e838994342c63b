import postgres from 'postgres'
import { CallWithdrawnError, callStatement, isUnavailableSqlState, type RpcDriver, type SqlAccess } from '../driver.js'

const NETWORK_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'EAI_AGAIN',
  'CONNECT_TIMEOUT', 'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED'])

type Values = postgres.ParameterOrJSON<never>[]

export type PostgresDriver = RpcDriver & { sql: SqlAccess, close (timeout?: number): Promise<void> }

/** A Postgres server (Supabase's own connection string works too) through a postgres.js pool. */
export function createPostgresDriver (url: string, { timeoutMs, max = 10, path }: { timeoutMs: number, max?: number, path?: string }): PostgresDriver {
  const sql = postgres(url, {
    max,
    // A Unix socket (the embedded store's process) instead of the URL's host.
    ...(path ? { path } : {}),
    connect_timeout: Math.max(1, Math.ceil(timeoutMs / 1000)),
    idle_timeout: 30,
    // postgres.js waits up to 20 s between reconnections after failures; a recovered
    // server should be noticed within a second.
    backoff: (retries: number) => Math.min(0.05 * 2 ** retries, 1),
    onnotice: () => {},
    // Calls set their own statement_timeout; this bounds direct SQL (the CLI, tests).
    connection: { statement_timeout: timeoutMs + 1000, application_name: 'gatehouse' }
  })
  let closed: Promise<void> | undefined
  return {
    kind: 'postgres',
    async call (fn, args, signal) {
      const { text, values } = callStatement(fn, args)
      // Each call is a transaction whose statement the server cancels at the deadline, so
      // a timed-out call has changed nothing (statement_timeout set per transaction also
      // holds behind a transaction-mode pooler). A call still waiting for a connection at
      // the deadline is withdrawn and never runs. The outcome of a call that did start
      // is always the server's: the result, or the cancellation (57014, "unavailable").
      const progress: { state: 'waiting' | 'running' | 'withdrawn' } = { state: 'waiting' }
      const work = (async () => {
        const connection = await sql.reserve()
        try {
          if (progress.state === 'withdrawn') throw new CallWithdrawnError()
          progress.state = 'running'
          // Pipelined: one round trip. COMMIT after a failed statement rolls back.
          const [, , call, commit] = await Promise.allSettled([
            connection.unsafe('begin'),
            connection.unsafe("select set_config('statement_timeout', $1, true)", [String(timeoutMs)]),
            connection.unsafe(text, values as Values),
            connection.unsafe('commit')
          ])
          if (call.status === 'rejected') throw call.reason
          if (commit.status === 'rejected') throw commit.reason
          return call.value[0]?.result ?? null
        } finally {
          connection.release()
        }
      })()
      return await new Promise((resolve, reject) => {
        const withdraw = () => {
          if (progress.state !== 'waiting') return
          progress.state = 'withdrawn'
          reject(new CallWithdrawnError())
        }
        const deadline = setTimeout(withdraw, timeoutMs)
        // The caller gave up entirely (the connection is gone): stop waiting too.
        const giveUp = () => { withdraw(); reject(signal.reason) }
        signal.addEventListener('abort', giveUp, { once: true })
        work.then(resolve, reject).finally(() => {
          clearTimeout(deadline)
          signal.removeEventListener('abort', giveUp)
        })
      })
    },
    sql: access(sql, sql.begin.bind(sql)),
    isUnavailable: isPostgresUnavailable,
    /** `timeout` (seconds) for running queries to finish; 0 ends them at once. */
    async close (timeout: number = 5) {
      closed ??= sql.end({ timeout })
      await closed
    }
  }
}

/** True when a postgres.js error means the server is unreachable rather than a bug. */
export function isPostgresUnavailable (error: unknown): boolean {
  const code = (error as { code?: unknown })?.code
  return isUnavailableSqlState(code) || NETWORK_ERRORS.has(String(code))
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
