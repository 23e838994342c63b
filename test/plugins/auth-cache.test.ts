import t from 'tap'
import { accessTokenFor, apiTokenFor, buildApp, createUser, freshPglite } from '../helpers/app.js'
import type { RpcDriver } from '../../plugins/app/supabase/driver.js'

/** The real embedded store, counting the SQL functions called: the round trips a request costs. */
async function countingStore () {
  const driver = await freshPglite()
  const calls: string[] = []
  const counted: RpcDriver = {
    kind: driver.kind,
    sql: driver.sql,
    call: (fn, args, signal) => { calls.push(fn); return driver.call(fn, args, signal) },
    isUnavailable: error => driver.isUnavailable(error),
    close: () => driver.close()
  }
  return { driver: counted, count: (fn: string) => calls.filter(c => c === fn).length }
}

const list = '/api/admin/tokens'

async function lastUsed (app: Awaited<ReturnType<typeof buildApp>>, auth: string, id: string): Promise<string | null> {
  const res = await app.inject({ method: 'GET', url: list, headers: { authorization: auth } })
  return (res.json().tokens as Array<{ id: string, lastUsedAt: string | null }>).find(tk => tk.id === id)?.lastUsedAt ?? null
}

t.test('an API token in the cache keeps its last_used_at; revoked, it is refused from the next request', async t => {
  const app = await buildApp(t, { env: { AUTH_CACHE_TTL_MS: '600000' } })
  const admin = await createUser(app, { role: 'admin' })
  const adminAuth = `Bearer ${accessTokenFor(app, admin)}`
  const user = await createUser(app)
  const { token, id } = await apiTokenFor(app, user)
  const templates = () => app.inject({ method: 'GET', url: '/api/templates', headers: { authorization: `Bearer ${token}` } })

  t.equal((await templates()).statusCode, 200)
  const first = await lastUsed(app, adminAuth, id)
  t.type(first, 'string')
  await new Promise(resolve => setTimeout(resolve, 20))
  for (let i = 0; i < 3; i++) t.equal((await templates()).statusCode, 200)
  t.equal(await lastUsed(app, adminAuth, id), first, 'later requests within the interval did not write it again')

  // Revoked through this process: refused from the very next request, cache or not.
  t.equal((await app.inject({ method: 'DELETE', url: `${list}/${id}`, headers: { authorization: adminAuth } })).statusCode, 200)
  t.equal((await templates()).statusCode, 401)
})

t.test('a demoted admin and a removed user are refused from the next request', async t => {
  const app = await buildApp(t, { env: { AUTH_CACHE_TTL_MS: '600000' } })
  const admin = await createUser(app, { role: 'admin' })
  const auth = { authorization: `Bearer ${accessTokenFor(app, admin)}` }
  t.equal((await app.inject({ method: 'GET', url: list, headers: auth })).statusCode, 200)
  await app.store.upsertUser({ id: admin.id, role: 'user' })
  t.equal((await app.inject({ method: 'GET', url: list, headers: auth })).statusCode, 403)

  t.equal((await app.inject({ method: 'GET', url: '/websocket-token/', headers: auth })).statusCode, 200)
  await app.store.deleteUser({ id: admin.id })
  t.equal((await app.inject({ method: 'GET', url: '/websocket-token/', headers: auth })).statusCode, 401)
})

for (const [ttl, lookups] of [['30000', 1], ['0', 5]] as const) {
  t.test(`AUTH_CACHE_TTL_MS=${ttl}: five authenticated requests cost ${lookups} store lookup(s) each for the user and the API token`, async t => {
    const { driver, count } = await countingStore()
    const app = await buildApp(t, { env: { AUTH_CACHE_TTL_MS: ttl }, driver })
    const user = await createUser(app)
    const access = { authorization: `Bearer ${accessTokenFor(app, user)}` }
    const { token } = await apiTokenFor(app, user)
    for (let i = 0; i < 5; i++) {
      t.equal((await app.inject({ method: 'GET', url: '/websocket-token/', headers: access })).statusCode, 200)
      t.equal((await app.inject({ method: 'GET', url: '/api/templates', headers: { authorization: `Bearer ${token}` } })).statusCode, 200)
    }
    t.equal(count('gatehouse_users_get'), lookups)
    t.equal(count('gatehouse_token_authenticate'), lookups)
  })
}
