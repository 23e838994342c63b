import t, { type Test } from 'tap'
import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { ApiError } from '../../lib/errors.js'
import { canonicalJson } from '../../plugins/app/messaging.js'
import type { SqlAccess } from '../../plugins/app/supabase/driver.js'
import { accessTokenFor, apiTokenFor, buildApp, createUser } from '../helpers/app.js'
import { testBackends } from '../helpers/backends.js'

const TABLES = ['users', 'api_tokens', 'templates', 'message_bodies', 'messages', 'idempotency_keys']

/** Row counts of every table: what a rejected request must leave as it was. */
async function counts (sql: SqlAccess) {
  const out: Record<string, number> = {}
  for (const table of TABLES) out[table] = Number((await sql.query<{ n: string }>(`select count(*)::text as n from ${table}`))[0].n)
  return out
}

async function setup (t: Test, env: Record<string, string> = {}) {
  const { driver, sql } = await testBackends()[0].open(t)
  const app = await buildApp(t, { driver, env })
  const org = `org_${randomUUID()}`
  const admin = await createUser(app, { role: 'admin', organization_id: org })
  const sender = await createUser(app, { organization_id: org })
  const recipient = await createUser(app, { organization_id: org })
  const api = (await apiTokenFor(app, sender)).token
  const adminToken = accessTokenFor(app, admin)
  return { app, sql, admin, sender, recipient, api, adminToken }
}

function post (app: FastifyInstance, url: string, token: string, payload: unknown, headers: Record<string, string> = {}) {
  return app.inject({
    method: 'POST',
    url,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload)
  })
}

t.test('bodies are validated strictly: wrong JSON types are a 400 and store nothing', async t => {
  const { app, sql, recipient, api, adminToken } = await setup(t)
  const messageId = randomUUID()
  const cases: Array<[string, string, unknown, string]> = [
    ['/api/messages/send-bulk', api, { recipientIds: [recipient.id], content: 12345 }, 'content'],
    ['/api/messages/send-bulk', api, { recipientIds: [recipient.id], content: true }, 'content'],
    ['/api/messages/send-bulk', api, { recipientIds: recipient.id, content: 'hi' }, 'recipientIds'],
    ['/api/messages/send-private', api, { recipientId: [recipient.id], content: 'hi' }, 'recipientId'],
    ['/api/templates', api, { name: 123, content: 'x' }, 'name'],
    ['/api/templates', api, { name: 'n', content: ['a'] }, 'content'],
    ['/api/messages/ack', accessTokenFor(app, recipient), { ids: messageId }, 'ids'],
    ['/api/admin/tokens', adminToken, { userId: recipient.id, name: 12345 }, 'name']
  ]
  const before = await counts(sql)
  for (const [url, token, body, field] of cases) {
    const res = await post(app, url, token, body)
    t.equal(res.statusCode, 400, `${url} ${JSON.stringify(body)}`)
    t.match(res.json(), { success: false, statusCode: 400, code: 'VALIDATION_ERROR', message: new RegExp(field) })
  }
  t.same(await counts(sql), before, 'nothing was stored')

  const query = await app.inject({ method: 'GET', url: '/api/messages/inbox?limit=5', headers: { authorization: `Bearer ${accessTokenFor(app, recipient)}` } })
  t.equal(query.statusCode, 200, 'querystrings are still coerced: "5" is a number')
})

t.test('NUL in any text field is a 400 naming the field, and stores nothing', async t => {
  const { app, sql, recipient, api, adminToken } = await setup(t)
  const nul = 'a\u0000b'
  const cases: Array<[string, string, unknown, string]> = [
    ['/api/messages/send-bulk', api, { recipientIds: [recipient.id], content: nul }, 'body/content'],
    ['/api/messages/send-private', api, { recipientId: recipient.id, content: nul }, 'body/content'],
    ['/api/messages/send-template', api, { recipientIds: [recipient.id], templateId: randomUUID(), placeholders: { x: nul } }, 'body/placeholders/x'],
    ['/api/templates', api, { name: nul, content: 'x' }, 'body/name'],
    ['/api/templates', api, { name: 'n', content: nul }, 'body/content'],
    ['/api/admin/tokens', adminToken, { userId: recipient.id, name: nul }, 'body/name']
  ]
  const before = await counts(sql)
  for (const [url, token, body, field] of cases) {
    const res = await post(app, url, token, body)
    t.equal(res.statusCode, 400, `${url} ${field}`)
    t.match(res.json(), { success: false, code: 'VALIDATION_ERROR', message: `${field} must not contain NUL (U+0000) characters` })
  }
  t.same(await counts(sql), before, 'nothing was stored')
})

t.test('a body nested 100,000 levels deep with an Idempotency-Key is no 5xx', async t => {
  const { app, recipient, api } = await setup(t)
  const deep = '['.repeat(100_000) + ']'.repeat(100_000)
  const res = await post(app, '/api/messages/send-bulk', api, `{"recipientIds":["${recipient.id}"],"content":"hi","extra":${deep}}`, { 'idempotency-key': 'deep-1' })
  t.ok(res.statusCode < 500, `answered ${res.statusCode}`)
  const again = await post(app, '/api/messages/send-bulk', api, `{"recipientIds":["${recipient.id}"],"content":"hi","extra":${deep}}`, { 'idempotency-key': 'deep-1' })
  t.equal(again.statusCode, res.statusCode, 'a retry is recognised')
  t.same(again.json().messages, res.json().messages, 'and replays the first answer')
})

t.test('the request hash is the same canonical JSON as before, without recursion', async t => {
  t.equal(canonicalJson({ b: [1, { d: undefined, c: 'x"' }], a: null, e: undefined }), '{"a":null,"b":[1,{"c":"x\\""}]}')
  t.equal(canonicalJson([undefined, [], {}, true]), '[null,[],{},true]')
  t.equal(canonicalJson(undefined), 'null')
  let deep: unknown = 0
  for (let i = 0; i < 200_000; i++) deep = i % 2 === 0 ? [deep] : { k: deep }
  const text = canonicalJson(deep)
  t.equal(text, '{"k":['.repeat(100_000) + '0' + ']}'.repeat(100_000), 'deep values hash without overflowing the stack')
})

for (const backend of testBackends()) {
  t.test(`a value Postgres rejects is a 400 on the ${backend.name} store`, { skip: backend.skip }, async t => {
    const app = await buildApp(t, { driver: await backend.driver(t) })
    const user = await createUser(app)
    // Past validation (as the CLI or a future route might call it): the store's own answer.
    const error = await app.store.createTemplate({ organizationId: null, ownerId: user.id }, { name: 'n\u0000', content: 'x' }).catch(e => e)
    t.ok(error instanceof ApiError, 'a client error, not a crash')
    t.match(error, { statusCode: 400, code: 'INVALID_VALUE', details: { sqlstate: /^22/ } })
    t.same(await app.store.listTemplates({ organizationId: null, ownerId: user.id }), [], 'nothing stored')
  })
}
