import { createClient } from '@supabase/supabase-js'
import WebSocket from 'ws'
import { isUnavailableSqlState, type RpcDriver } from '../driver.js'

/** An error answered by PostgREST (or the gateway before it), or a request that got no answer. */
export class SupabaseRpcError extends Error {
  constructor (
    message: string,
    /** SQLSTATE, a PGRST code, or '' when there was no usable answer. */
    public readonly code: string,
    /** HTTP status; 0 when the request never got a response (refused, reset, aborted). */
    public readonly status: number,
    public readonly details: string | null,
    public readonly hint: string | null
  ) {
    super(message)
    this.name = 'SupabaseRpcError'
  }
}

/**
 * Supabase through supabase-js. Every operation is a `supabase.rpc()` of a function
 * created by the migrations, so PostgREST runs exactly the SQL the other backends run.
 */
export function createSupabaseDriver (url: string, serviceRoleKey: string): RpcDriver {
  const client = createClient(url, serviceRoleKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    // supabase-js on Node 20 has no global WebSocket; realtime is unused but must construct.
    realtime: { transport: WebSocket as never }
  })
  return {
    kind: 'supabase',
    async call (fn, args, signal) {
      // JSON drops undefined keys, and PostgREST matches functions by argument names: send null.
      const named = Object.fromEntries(Object.entries(args).map(([name, value]) => [name, value ?? null]))
      // No deadline of our own: PostgREST answers when the statement ends or its role's
      // statement_timeout cancels it, and that answer is the outcome. `signal` only stops
      // waiting for a gateway that does not answer at all.
      const { data, error, status } = await client.rpc(fn, named).abortSignal(signal)
      if (error) throw new SupabaseRpcError(error.message, error.code ?? '', status, error.details ?? null, error.hint ?? null)
      return data ?? null
    },
    isUnavailable (error) {
      if (!(error instanceof SupabaseRpcError)) return false
      // supabase-js turns network failures (refused, reset, DNS, aborted) into status 0 with an empty code.
      if (error.status === 0 || error.status === 502 || error.status === 503 || error.status === 504) return true
      return isUnavailableSqlState(error.code)
    },
    async close () { await client.removeAllChannels() }
  }
}
