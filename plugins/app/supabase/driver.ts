/**
 * What a storage backend must do: call one of the SQL functions created by the
 * migrations, by name with named arguments, and return its jsonb result.
 */
export interface RpcDriver {
  readonly kind: 'pglite' | 'postgres' | 'supabase'
  /**
   * `signal` aborts when the caller stops waiting altogether. A driver that can have
   * the database cancel a call at the store's deadline does so, and answers the
   * outcome (a result, or the cancellation) rather than leaving it unknown.
   */
  call (fn: string, args: Record<string, unknown>, signal: AbortSignal): Promise<unknown>
  /** Migrations a store that migrates itself (the embedded one) applied as it started. */
  readonly migratedAtStart?: readonly string[]
  /** Direct SQL, for migrations; only backends with a database connection have it. */
  sql?: SqlAccess
  /** True when an error means the backend is unreachable rather than a bug. */
  isUnavailable (error: unknown): boolean
  close (): Promise<void>
}

export interface SqlAccess {
  /** Runs a script of several statements. */
  exec (script: string): Promise<void>
  query<T = Record<string, unknown>> (text: string, values?: unknown[]): Promise<T[]>
  /** Runs `fn` in one transaction on one connection; commits when it resolves, rolls back when it throws. */
  transaction<T> (fn: (tx: SqlAccess) => Promise<T>): Promise<T>
}

export const FUNCTION_NAME = /^gatehouse_[a-z_]+$/

/** `select fn(p_a => $1, p_b => $2) as result`: named arguments, as PostgREST calls them. */
export function callStatement (fn: string, args: Record<string, unknown>): { text: string, values: unknown[] } {
  if (!FUNCTION_NAME.test(fn)) throw new Error(`not a gatehouse function: ${fn}`)
  const names = Object.keys(args)
  for (const name of names) if (!/^p_[a-z_]+$/.test(name)) throw new Error(`bad argument name: ${name}`)
  const text = `select ${fn}(${names.map((n, i) => `${n} => $${i + 1}`).join(', ')}) as result`
  return { text, values: names.map(n => args[n] ?? null) }
}

/** SQLSTATE classes that mean "the server cannot serve us right now". */
export function isUnavailableSqlState (code: unknown): boolean {
  return typeof code === 'string' && /^(08|53|57|58)/.test(code)
}

/** A call given up on before it reached the database: it has no effect. */
export class CallWithdrawnError extends Error {
  constructor () { super('the store did not start the call within its deadline') }
}

/**
 * SQLSTATE class 22, data exceptions: a value the client sent that Postgres cannot
 * hold (NUL in text, invalid encoding, out of range, too long). The client's fault.
 */
export function isDataExceptionSqlState (code: unknown): boolean {
  return typeof code === 'string' && /^22[0-9A-Z]{3}$/.test(code)
}
