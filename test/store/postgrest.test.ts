import { createClient } from '@supabase/supabase-js'
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import type { SqlAccess } from '../../plugins/app/supabase/driver.js'
import { SupabaseRpcError } from '../../plugins/app/supabase/drivers/supabase.js'
import { Store } from '../../plugins/app/supabase/store.js'
import { DependencyUnavailableError } from '../../lib/errors.js'
import { freshPglite } from '../helpers/app.js'
import { ANON_KEY, postgresDriver, SERVICE_ROLE_KEY, testBackends } from '../helpers/backends.js'
import { startPostgrest, statusForSqlState, supabaseKey } from '../helpers/postgrest.js'

// The endpoint the Supabase backend is tested against must answer like PostgREST,
// or the conformance suite proves nothing about the real service.

const noDatabase = process.env.CI || process.env.TEST_DATABASE_URL ? false : 'TEST_DATABASE_URL is not set'
const databases: Array<{ name: string, skip: string | false, open (t: Test): Promise<SqlAccess> }> = [
  {
    name: 'pglite',
    skip: false,
    async open (t) {
      const driver = await freshPglite({ supabase: true })
      t.after(() => driver.close())
      return driver.sql
    }
  },
  {
    name: 'postgres',
    skip: noDatabase,
    async open (t) {
      return (await postgresDriver(t, process.env.TEST_DATABASE_URL!, { supabase: true })).sql
    }
  }
]

for (const database of databases) {
  t.test(`the PostgREST endpoint on ${database.name}`, { skip: database.skip }, async t => {
    const postgrest = await startPostgrest(await database.open(t))
    t.after(() => postgrest.close())
    const rpc = (fn: string, body: unknown, headers: Record<string, string> = { apikey: SERVICE_ROLE_KEY, authorization: `Bearer ${SERVICE_ROLE_KEY}` }) =>
      fetch(`${postgrest.url}/rest/v1/rpc/${fn}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })

    t.test('requires API keys that are JWTs signed with the project secret', async t => {
      const foreign = supabaseKey('service_role', 'another-secret-another-secret-another-secret')
      const wrong: Array<Record<string, string>> = [
        {},
        { authorization: `Bearer ${SERVICE_ROLE_KEY}` },
        { apikey: 'test-service-role-key', authorization: 'Bearer test-service-role-key' },
        { apikey: SERVICE_ROLE_KEY, authorization: 'Bearer wrong' },
        { apikey: foreign, authorization: `Bearer ${foreign}` }
      ]
      for (const headers of wrong) {
        const res = await rpc('gatehouse_health', {}, headers)
        t.equal(res.status, 401, JSON.stringify(Object.keys(headers)))
        t.match(await res.json(), { code: 'PGRST301', message: 'Invalid API key', details: null, hint: String })
      }
      t.equal((await rpc('gatehouse_health', {})).status, 200)
      t.equal((await rpc('gatehouse_health', {}, { apikey: SERVICE_ROLE_KEY })).status, 200, 'without a bearer token the apikey decides')
    })

    t.test("runs each call as the token's role", async t => {
      const anon = await rpc('gatehouse_health', {}, { apikey: ANON_KEY, authorization: `Bearer ${ANON_KEY}` })
      t.equal(anon.status, 401, 'the anonymous role may not call it')
      t.match(await anon.json(), { code: '42501', message: /permission denied/ })
      const authenticated = supabaseKey('authenticated')
      const signedIn = await rpc('gatehouse_health', {}, { apikey: ANON_KEY, authorization: `Bearer ${authenticated}` })
      t.equal(signedIn.status, 403, 'a signed-in user neither')
      t.match(await signedIn.json(), { code: '42501' })
    })

    t.test('answers a function result as JSON, and SQL NULL as null', async t => {
      const health = await rpc('gatehouse_health', {})
      t.match(health.headers.get('content-type'), /^application\/json/)
      t.match(await health.json(), { ok: true, now: /Z$/ })
      const missing = await rpc('gatehouse_user_get', { p_id: 'nobody' })
      t.equal(missing.status, 200)
      t.equal(await missing.text(), 'null')
    })

    t.test('converts JSON arguments to the parameter types', async t => {
      await rpc('gatehouse_user_upsert', { p_user: { id: 'typed', organization_id: 'org' } })
      const created = await rpc('gatehouse_token_create', { p_id: 'tok', p_user_id: 'typed', p_created_by: null, p_name: null, p_expires_at: '2030-01-01T01:00:00+01:00' })
      t.match(await created.json(), { token: { expiresAt: '2030-01-01T00:00:00.000Z' } }, 'timestamptz from an ISO string')
      const sent = await rpc('gatehouse_send', {
        p_sender: 'typed', p_sender_org: 'org', p_is_admin: false, p_recipients: ['typed'], p_content: 'x', p_template_id: null, p_idempotency_key: null, p_request_hash: null
      })
      t.match(await sent.json(), { count: 1 }, 'text[] from a JSON array')
    })

    t.test('an unknown function or argument set is PGRST202, 404', async t => {
      for (const [fn, body] of [['gatehouse_nothing', {}], ['gatehouse_user_get', {}], ['gatehouse_user_get', { p_id: 'x', p_other: 1 }]] as const) {
        const res = await rpc(fn, body)
        t.equal(res.status, 404)
        t.match(await res.json(), { code: 'PGRST202', message: String, details: String, hint: null })
      }
    })

    t.test('a body that is not a JSON object is PGRST102, 400', async t => {
      const res = await fetch(`${postgrest.url}/rest/v1/rpc/gatehouse_health`, {
        method: 'POST', headers: { apikey: SERVICE_ROLE_KEY, authorization: `Bearer ${SERVICE_ROLE_KEY}`, 'content-type': 'application/json' }, body: '{nope'
      })
      t.equal(res.status, 400)
      t.match(await res.json(), { code: 'PGRST102' })
    })

    t.test('database errors keep their SQLSTATE and get PostgREST statuses', async t => {
      const badUuid = await rpc('gatehouse_template_get', { p_org: null, p_owner: 'x', p_id: 'not-a-uuid' })
      t.equal(badUuid.status, 400)
      t.match(await badUuid.json(), { code: '22P02', message: /uuid/, details: null, hint: null })

      const duplicate = await rpc('gatehouse_token_create', { p_id: 'tok', p_user_id: 'typed', p_created_by: null, p_name: null, p_expires_at: null })
      t.equal(duplicate.status, 409)
      t.match(await duplicate.json(), { code: '23505', message: /duplicate key/, details: /tok/ })
    })

    t.test('supabase-js reads it as it reads PostgREST', async t => {
      const client = createClient(postgrest.url, SERVICE_ROLE_KEY, {
        auth: { persistSession: false, autoRefreshToken: false },
        realtime: { transport: WebSocket as never }
      })
      t.after(() => client.removeAllChannels())
      t.match(await client.rpc('gatehouse_health'), { data: { ok: true }, error: null, status: 200 })
      t.match(await client.rpc('gatehouse_user_get', { p_id: 'nobody' }), { data: null, error: null, status: 200 })
      t.match(await client.rpc('gatehouse_nothing'), { data: null, error: { code: 'PGRST202' }, status: 404 })
    })
  })
}

t.test('the Supabase backend reports a failing call as a failure, not an outage', async t => {
  const backend = testBackends().find(b => b.name === 'supabase')!
  const store = new Store(await backend.driver(t), 10_000)
  const error = await store.getTemplate({ organizationId: null, ownerId: 'x' }, 'not-a-uuid').then(() => null, (e: unknown) => e)
  t.notOk(error instanceof DependencyUnavailableError)
  // A data exception (SQLSTATE 22xxx) is the caller's fault: a 400, with PostgREST's answer as the cause.
  t.match(error, { statusCode: 400, code: 'INVALID_VALUE', details: { sqlstate: '22P02' } })
  t.ok((error as Error).cause instanceof SupabaseRpcError)
  t.match((error as Error).cause, { code: '22P02', status: 400 })
})

t.test('SQLSTATEs map to the statuses PostgREST documents', async t => {
  const cases: Record<string, number> = {
    '08006': 503,
    53300: 503,
    53400: 500,
    23505: 409,
    23503: 409,
    25006: 405,
    25001: 500,
    28000: 403,
    42501: 403,
    42883: 404,
    '42P01': 404,
    40001: 500,
    57014: 500,
    P0001: 400,
    P0002: 500,
    XX000: 500,
    '22P02': 400,
    23502: 400
  }
  for (const [code, status] of Object.entries(cases)) t.equal(statusForSqlState(code), status, code)
})
