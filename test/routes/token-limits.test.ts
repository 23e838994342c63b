import postgres from 'postgres'
import t from 'tap'
import { accessTokenFor, buildApp, createUser } from '../helpers/app.js'
import { freshDatabase, requireDatabaseUrl, testBackends, type TestBackend } from '../helpers/backends.js'
import { createPostgresDriver } from '../../plugins/app/supabase/drivers/postgres.js'
import { migrate } from '../../plugins/app/supabase/migrate.js'

const url = '/api/admin/tokens'

async function setup (t: Parameters<typeof buildApp>[0], backend: TestBackend) {
  const app = await buildApp(t, { driver: await backend.driver(t) })
  const admin = await createUser(app, { role: 'admin', name: 'Admin User' })
  const sender = await createUser(app, { name: 'Sender', organization_id: 'org_limits' })
  const recipient = await createUser(app, { name: 'Recipient', organization_id: 'org_limits' })
  const other = await createUser(app, { name: 'Other', organization_id: 'org_limits' })
  const adminAuth = { authorization: `Bearer ${accessTokenFor(app, admin)}` }
  const mint = async (payload: Record<string, unknown>) => {
    const res = await app.inject({ method: 'POST', url, headers: adminAuth, payload: { userId: sender.id, ...payload } })
    t.equal(res.statusCode, 201, 'minted')
    return res.json() as { token: string, tokenId: string, sendsPerMinute: number | null, sendQuota: number | null }
  }
  const listed = async (tokenId: string) => (await app.inject({ method: 'GET', url: `${url}?userId=${sender.id}`, headers: adminAuth }))
    .json().tokens.find((r: { id: string }) => r.id === tokenId)
  const introspect = async (token: string) => (await app.inject({ method: 'POST', url: '/api/tokens/introspect', headers: adminAuth, payload: { token } })).json()
  const inbox = async (userId: string) => ((await app.inject({
    method: 'GET', url: '/api/messages/inbox?limit=100', headers: { authorization: `Bearer ${accessTokenFor(app, { ...recipient, id: userId })}` }
  })).json().messages as Array<{ content: string }>).map(m => m.content)
  const send = (token: string, route: string, payload: unknown, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url: `/api/messages/${route}`, headers: { authorization: `Bearer ${token}`, ...headers }, payload: payload as object })
  return { app, admin, sender, recipient, other, adminAuth, mint, listed, introspect, inbox, send }
}

for (const backend of testBackends()) {
  t.test(backend.name, { skip: backend.skip }, async t => {
    t.test('limits are shown when minted, listed and introspected; a token without them shows null', async t => {
      const { mint, listed, introspect } = await setup(t, backend)
      const limited = await mint({ sendsPerMinute: 30, sendQuota: 500 })
      t.equal(limited.sendsPerMinute, 30)
      t.equal(limited.sendQuota, 500)
      t.match(await listed(limited.tokenId), { sendsPerMinute: 30, sendQuota: 500, sendQuotaRemaining: 500 })
      t.match(await introspect(limited.token), { active: true, sends_per_minute: 30, send_quota: 500, send_quota_remaining: 500 })

      const plain = await mint({ sendsPerMinute: null })
      t.equal(plain.sendsPerMinute, null)
      t.equal(plain.sendQuota, null)
      t.match(await listed(plain.tokenId), { sendsPerMinute: null, sendQuota: null, sendQuotaRemaining: null })
      const plainIntrospected = await introspect(plain.token)
      t.equal(plainIntrospected.active, true)
      for (const field of ['sends_per_minute', 'send_quota', 'send_quota_remaining']) t.notOk(field in plainIntrospected, `no ${field} without limits`)
    })

    t.test('one accepted send request costs one unit whatever its recipients; a spent quota refuses with 429 QUOTA_EXHAUSTED and sends nothing', async t => {
      const { mint, listed, introspect, inbox, send, recipient, other } = await setup(t, backend)
      const { token, tokenId } = await mint({ sendQuota: 3 })

      const bulk = await send(token, 'send-bulk', { recipientIds: [recipient.id, other.id], content: 'one' })
      t.equal(bulk.statusCode, 200, bulk.body)
      t.equal(bulk.headers['x-send-quota-limit'], '3')
      t.equal(bulk.headers['x-send-quota-remaining'], '2', 'two recipients, one unit')
      t.same(Object.keys(bulk.json()).sort(), ['count', 'messages', 'success'], 'the response body keeps its shape')

      // Refused sends take nothing: unknown recipients (422), a missing template (404).
      t.equal((await send(token, 'send-private', { recipientId: 'nobody-here', content: 'bad' })).statusCode, 422)
      t.equal((await send(token, 'send-template', { templateId: 'no-such-template', recipientIds: [recipient.id] })).statusCode, 404)
      t.equal((await listed(tokenId)).sendQuotaRemaining, 2)

      t.equal((await send(token, 'send-private', { recipientId: recipient.id, content: 'two' })).statusCode, 200)
      const last = await send(token, 'send-private', { recipientId: recipient.id, content: 'three' }, { 'idempotency-key': 'last-one' })
      t.equal(last.statusCode, 200)
      t.equal(last.headers['x-send-quota-remaining'], '0')

      const refused = await send(token, 'send-bulk', { recipientIds: [recipient.id], content: 'four' }, { 'idempotency-key': 'over' })
      t.equal(refused.statusCode, 429)
      t.same(refused.json(), {
        success: false,
        statusCode: 429,
        status: 429,
        code: 'QUOTA_EXHAUSTED',
        error: "This token's send quota of 3 is used up; nothing was sent",
        message: "This token's send quota of 3 is used up; nothing was sent",
        details: { sendQuota: 3, sendQuotaRemaining: 0 }
      })
      t.equal(refused.headers['x-send-quota-remaining'], '0')
      t.equal(refused.headers['retry-after'], undefined, 'waiting will not help: no Retry-After')

      // A replay of an accepted send still answers, and takes nothing.
      const replay = await send(token, 'send-private', { recipientId: recipient.id, content: 'three' }, { 'idempotency-key': 'last-one' })
      t.equal(replay.statusCode, 200)
      t.equal(replay.headers['idempotent-replayed'], 'true')
      t.same(replay.json().messages, last.json().messages)
      // The refused send kept no idempotency record: the same key with another body is not a 422.
      t.equal((await send(token, 'send-bulk', { recipientIds: [other.id], content: 'other' }, { 'idempotency-key': 'over' })).json().code, 'QUOTA_EXHAUSTED')

      t.same(await inbox(recipient.id), ['one', 'two', 'three'], 'nothing past the quota was stored')
      t.same(await inbox(other.id), ['one'])
      t.match(await introspect(token), { active: true, send_quota: 3, send_quota_remaining: 0 })
    })

    t.test('an idempotent retry costs nothing more', async t => {
      const { mint, listed, send, recipient } = await setup(t, backend)
      const { token, tokenId } = await mint({ sendQuota: 5 })
      const body = { recipientIds: [recipient.id], content: 'once' }
      const first = await send(token, 'send-bulk', body, { 'idempotency-key': 'k1' })
      const again = await send(token, 'send-bulk', body, { 'idempotency-key': 'k1' })
      t.equal(first.statusCode, 200)
      t.equal(again.statusCode, 200)
      t.equal(again.headers['idempotent-replayed'], 'true')
      t.equal((await listed(tokenId)).sendQuotaRemaining, 4)
    })

    t.test('the per-minute limit refuses with 429 RATE_LIMITED and Retry-After, counting every send route together', async t => {
      const { mint, listed, inbox, send, recipient } = await setup(t, backend)
      const { token, tokenId } = await mint({ sendsPerMinute: 2, sendQuota: 10 })
      const first = await send(token, 'send-private', { recipientId: recipient.id, content: 'a' })
      t.equal(first.statusCode, 200)
      t.equal(first.headers['x-send-ratelimit-limit'], '2')
      t.equal(first.headers['x-send-ratelimit-remaining'], '1')
      t.equal((await send(token, 'send-bulk', { recipientIds: [recipient.id], content: 'b' })).statusCode, 200)
      const refused = await send(token, 'send-private', { recipientId: recipient.id, content: 'c' })
      t.equal(refused.statusCode, 429)
      t.match(refused.json(), { success: false, statusCode: 429, status: 429, code: 'RATE_LIMITED', details: { sendsPerMinute: 2 } })
      const retryAfter = Number(refused.headers['retry-after'])
      t.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After within the minute (${retryAfter})`)
      t.equal(refused.headers['x-send-ratelimit-remaining'], '0')
      t.same(await inbox(recipient.id), ['a', 'b'], 'the refused send stored nothing')
      t.equal((await listed(tokenId)).sendQuotaRemaining, 8, 'and took no quota')
    })

    t.test('tokens without limits, and other tokens of the same user, are not held back', async t => {
      const { mint, send, recipient } = await setup(t, backend)
      const limited = await mint({ sendsPerMinute: 1 })
      const free = await mint({})
      t.equal((await send(limited.token, 'send-private', { recipientId: recipient.id, content: 'x' })).statusCode, 200)
      t.equal((await send(limited.token, 'send-private', { recipientId: recipient.id, content: 'x' })).statusCode, 429)
      for (let i = 0; i < 3; i++) {
        const res = await send(free.token, 'send-private', { recipientId: recipient.id, content: 'y' })
        t.equal(res.statusCode, 200)
        t.equal(res.headers['x-send-quota-remaining'], undefined, 'no quota, no quota headers')
        t.equal(res.headers['x-send-ratelimit-limit'], undefined, 'no limit of its own, no limit headers')
      }
    })
  })
}

t.test('bad limits are a 400 that mints nothing', async t => {
  const app = await buildApp(t)
  const admin = await createUser(app, { role: 'admin' })
  const user = await createUser(app)
  const adminAuth = { authorization: `Bearer ${accessTokenFor(app, admin)}` }
  const bad: Array<Record<string, unknown>> = [
    { sendsPerMinute: 0 }, { sendsPerMinute: -5 }, { sendsPerMinute: 1.5 }, { sendsPerMinute: '10' }, { sendsPerMinute: true },
    { sendQuota: 0 }, { sendQuota: -1 }, { sendQuota: 2.5 }, { sendQuota: '100' }, { sendQuota: 1e10 }, { sendQuota: {} }
  ]
  for (const fields of bad) {
    const res = await app.inject({ method: 'POST', url, headers: adminAuth, payload: { userId: user.id, ...fields } })
    t.equal(res.statusCode, 400, JSON.stringify(fields))
    t.match(res.json(), { success: false, statusCode: 400, status: 400, code: 'VALIDATION_ERROR' })
  }
  const tokens = (await app.inject({ method: 'GET', url: `${url}?userId=${user.id}`, headers: adminAuth })).json().tokens
  t.same(tokens, [], 'nothing was minted')
})

t.test('a send that fails in the store (cancelled at its timeout) takes no quota', { skip: process.env.CI || process.env.TEST_DATABASE_URL ? false : 'TEST_DATABASE_URL is not set' }, async t => {
  const STORE_TIMEOUT_MS = 500
  const database = await freshDatabase(t, requireDatabaseUrl())
  const driver = createPostgresDriver(database, { timeoutMs: STORE_TIMEOUT_MS, max: 4 })
  await migrate(driver.sql)
  const app = await buildApp(t, { driver, env: { STORE_TIMEOUT_MS: String(STORE_TIMEOUT_MS) } })
  const admin = await createUser(app, { role: 'admin' })
  const sender = await createUser(app)
  const adminAuth = { authorization: `Bearer ${accessTokenFor(app, admin)}` }
  const { token, tokenId } = (await app.inject({ method: 'POST', url, headers: adminAuth, payload: { userId: sender.id, sendQuota: 2 } })).json()
  const remaining = async () => (await app.inject({ method: 'GET', url: `${url}?userId=${sender.id}`, headers: adminAuth }))
    .json().tokens.find((r: { id: string }) => r.id === tokenId).sendQuotaRemaining
  const send = () => app.inject({ method: 'POST', url: '/api/messages/send-private', headers: { authorization: `Bearer ${token}` }, payload: { recipientId: sender.id, content: 'hi' } })

  // Another connection locks the table a send writes after taking its unit, so the send waits past the timeout.
  const locker = postgres(database, { max: 1, onnotice: () => {} })
  t.after(() => locker.end({ timeout: 5 }))
  let unlock!: () => void
  let locked!: () => void
  const isLocked = new Promise<void>(resolve => { locked = resolve })
  const held = locker.begin(async tx => {
    await tx`lock table message_bodies in exclusive mode`
    locked()
    await new Promise<void>(resolve => { unlock = resolve })
  })
  await isLocked
  t.equal((await send()).statusCode, 503)
  unlock()
  await held
  t.equal(await remaining(), 2, 'the cancelled send gave its unit back')
  t.equal((await send()).statusCode, 200)
  t.equal((await send()).statusCode, 200)
  t.equal((await send()).statusCode, 429, 'and the quota still holds exactly')
})
