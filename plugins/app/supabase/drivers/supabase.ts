import { createClient } from '@supabase/supabase-js'
import WebSocket from 'ws'
import { type RpcDriver } from '../driver.js'

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
      const { data, error } = await client.rpc(fn, args).abortSignal(signal)
      if (error) throw Object.assign(new Error(error.message), { code: error.code, details: error.details, hint: error.hint, supabase: true })
      return data ?? null
    },
    isUnavailable (error) {
      const err = error as { code?: unknown, message?: string }
      // supabase-js reports network failures (fetch failed, refused, aborted) with an empty code.
      if (err?.code === '' || err?.code === undefined) return true
      return /^(08|53|57|PGRST00)/.test(String(err.code)) || String(err.code) === '503'
    },
    async close () { await client.removeAllChannels() }
  }
}
