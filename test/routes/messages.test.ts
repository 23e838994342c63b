import t from 'tap'
import { randomUUID } from 'node:crypto'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { accessTokenFor, apiTokenFor, buildApp, createUser, freshPglite } from '../helpers/app.js'
import { testBackends } from '../helpers/backends.js'
import type { MessageBatch } from '../../plugins/app/websocket/index.js'
import type { User } from '../../schemas/users.js'

/** A sender with an API token in a fresh organization. */
async function sender (app: FastifyInstance, input: Parameters<typeof createUser>[1] = {}) {
  const user = await createUser(app, { organization_id: `org_${randomUUID()}`, ...input })
  return { user, token: (await apiTokenFor(app, user)).token }
}

function post (app: FastifyInstance, url: string, token: string, payload: unknown, headers: Record<string, string> = {}) {
  return app.inject({ method: 'POST', url: `/api/messages/${url}`, headers: { authorization: `Bearer ${token}`, ...headers }, payload: payload as object })
}

/** What a recipient sees in their inbox. */
async function inboxOf (app: FastifyInstance, user: User) {
  const res = await app.inject({ method: 'GET', url: '/api/messages/inbox', headers: { authorization: `Bearer ${accessTokenFor(app, user)}` } })
  if (res.statusCode !== 200) throw new Error(`inbox answered ${res.statusCode}`)
  return res.json().messages as Array<{ id: string, senderId: string, content: string, templateId: string | null }>
}

/** Records what the send path hands to delivery. */
function recordPublishes (app: FastifyInstance): MessageBatch[] {
  const batches: MessageBatch[] = []
  const publish = app.hub.publish.bind(app.hub)
  app.hub.publish = async batch => { batches.push(batch); await publish(batch) }
  return batches
}

const sentIds = (res: LightMyRequestResponse) => (res.json().messages as Array<{ id: string }>).map(m => m.id)

for (const backend of testBackends()) {
  t.test(`sending on the ${backend.name} store`, { skip: backend.skip }, async t => {
    // `sql` reaches the backend's own database, Supabase's included, to arrange what no route can.
    const { driver, sql } = await backend.open(t)
    const app = await buildApp(t, { driver })
    const published = recordPublishes(app)

    t.test('send-bulk stores one message per distinct recipient and hands them to delivery once', async t => {
      const { user, token } = await sender(app)
      const a = await createUser(app, { organization_id: user.organizationId })
      const b = await createUser(app, { organization_id: user.organizationId })
      published.length = 0

      const res = await post(app, 'send-bulk', token, { recipientIds: [a.id, b.id, a.id], content: 'Hello, team ✓' })
      t.equal(res.statusCode, 200)
      const body = res.json()
      t.same(Object.keys(body).sort(), ['count', 'messages', 'success'])
      t.match(body, { success: true, count: 2 })
      t.same(body.messages.map((m: { recipientId: string }) => m.recipientId), [a.id, b.id], 'recipients de-duplicated, order kept')
      t.same(Object.keys(body.messages[0]).sort(), ['id', 'recipientId'])
      t.notOk(res.headers['idempotent-replayed'])

      t.equal(published.length, 1, 'one publish for the whole send')
      t.match(published[0], { senderId: user.id, content: 'Hello, team ✓', templateId: null, createdAt: String })
      t.same(published[0].messages.map(m => m.id), sentIds(res))

      for (const recipient of [a, b]) {
        const inbox = await inboxOf(app, recipient)
        t.equal(inbox.length, 1)
        t.match(inbox[0], { senderId: user.id, content: 'Hello, team ✓', templateId: null })
      }
    })

    t.test('send-private stores one message', async t => {
      const { user, token } = await sender(app)
      const a = await createUser(app, { organization_id: user.organizationId })
      const res = await post(app, 'send-private', token, { recipientId: a.id, content: 'just you' })
      t.equal(res.statusCode, 200)
      t.match(res.json(), { success: true, count: 1, messages: [{ recipientId: a.id }] })
      t.match(await inboxOf(app, a), [{ id: sentIds(res)[0], content: 'just you', senderId: user.id }])
    })

    t.test('send-template fills the placeholders of an organization template', async t => {
      const { user, token } = await sender(app)
      const a = await createUser(app, { organization_id: user.organizationId })
      const created = await app.inject({
        method: 'POST',
        url: '/api/templates',
        headers: { authorization: `Bearer ${token}` },
        payload: { name: 'invite', content: 'Hi {{name}}, see you at {{ event }} ({{name}})' }
      })
      t.equal(created.statusCode, 201)
      const templateId = created.json().template.id

      const res = await post(app, 'send-template', token, { templateId, recipientIds: [a.id], placeholders: { name: 'John', event: 'Meeting', unused: 'x' } })
      t.equal(res.statusCode, 200)
      t.match(res.json(), { success: true, count: 1 })
      t.match(await inboxOf(app, a), [{ content: 'Hi John, see you at Meeting (John)', templateId }])

      const literal = await post(app, 'send-template', token, { templateId, recipientIds: [a.id], placeholders: { name: '{{event}}', event: 7 } })
      t.equal(literal.statusCode, 200)
      t.equal((await inboxOf(app, a))[1].content, 'Hi {{event}}, see you at 7 ({{event}})', 'values are inserted as they are')

      const missing = await post(app, 'send-template', token, { templateId, recipientIds: [a.id], placeholders: { name: 'John' } })
      t.equal(missing.statusCode, 422)
      t.match(missing.json(), { success: false, code: 'MISSING_PLACEHOLDERS', error: /event/, details: { missingPlaceholders: ['event'] } })

      const unknown = await post(app, 'send-template', token, { templateId: randomUUID(), recipientIds: [a.id], placeholders: {} })
      t.equal(unknown.statusCode, 404)
      t.match(unknown.json(), { success: false, statusCode: 404, code: 'TEMPLATE_NOT_FOUND' })

      const other = await sender(app)
      const foreign = await post(app, 'send-template', other.token, { templateId, recipientIds: [other.user.id], placeholders: { name: 'a', event: 'b' } })
      t.equal(foreign.statusCode, 404, "another organization's template is not found")

      t.equal((await inboxOf(app, a)).length, 2, 'the refused sends stored nothing')
    })

    t.test('recipients outside the organization are refused with their ids and nothing is stored', async t => {
      const { user, token } = await sender(app)
      const colleague = await createUser(app, { organization_id: user.organizationId })
      const outsider = await createUser(app, { organization_id: `org_${randomUUID()}` })
      const noOrg = await createUser(app, { organization_id: null })
      published.length = 0

      const res = await post(app, 'send-bulk', token, { recipientIds: [colleague.id, outsider.id, 'no_such_user', noOrg.id], content: 'x' })
      t.equal(res.statusCode, 422)
      t.match(res.json(), { success: false, statusCode: 422, code: 'INVALID_RECIPIENTS', error: String, message: String })
      t.same(res.json().details.invalidRecipientIds, [outsider.id, 'no_such_user', noOrg.id])
      for (const u of [colleague, outsider, noOrg]) t.same(await inboxOf(app, u), [], 'nothing stored')
      t.equal(published.length, 0, 'nothing delivered')

      const unknown = await post(app, 'send-private', token, { recipientId: 'ghost', content: 'x' })
      t.equal(unknown.statusCode, 422)
      t.same(unknown.json().details.invalidRecipientIds, ['ghost'])
    })

    t.test('an administrator may send across organizations', async t => {
      const admin = await sender(app, { role: 'admin' })
      const outsider = await createUser(app, { organization_id: `org_${randomUUID()}` })
      const noOrg = await createUser(app, { organization_id: null })
      const res = await post(app, 'send-bulk', admin.token, { recipientIds: [outsider.id, noOrg.id], content: 'notice' })
      t.equal(res.statusCode, 200)
      t.equal(res.json().count, 2)
      t.match(await inboxOf(app, outsider), [{ content: 'notice', senderId: admin.user.id }])
    })

    t.test('a user without an organization may only message themselves', async t => {
      const { user, token } = await sender(app, { organization_id: null })
      const other = await createUser(app, { organization_id: null })
      t.equal((await post(app, 'send-private', token, { recipientId: user.id, content: 'note to self' })).statusCode, 200)
      t.equal((await post(app, 'send-private', token, { recipientId: other.id, content: 'hi' })).statusCode, 422)
    })

    t.test('Idempotency-Key: a retry replays the first response and stores and delivers nothing again', async t => {
      const { user, token } = await sender(app)
      const a = await createUser(app, { organization_id: user.organizationId })
      const key = { 'idempotency-key': `retry-${randomUUID()}` }
      published.length = 0

      const first = await post(app, 'send-bulk', token, { recipientIds: [a.id], content: 'once' }, key)
      t.equal(first.statusCode, 200)
      const again = await post(app, 'send-bulk', token, { content: 'once', recipientIds: [a.id] }, key)
      t.equal(again.statusCode, 200)
      t.same(again.json(), first.json(), 'same body, whatever the key order')
      t.equal(again.headers['idempotent-replayed'], 'true')
      t.equal((await inboxOf(app, a)).length, 1, 'one message stored')
      t.equal(published.length, 1, 'delivered once')

      const changed = await post(app, 'send-bulk', token, { recipientIds: [a.id], content: 'twice' }, key)
      t.equal(changed.statusCode, 422)
      t.match(changed.json(), { success: false, code: 'IDEMPOTENCY_KEY_REUSED' })
      const otherRoute = await post(app, 'send-private', token, { recipientId: a.id, content: 'once' }, key)
      t.equal(otherRoute.statusCode, 422, 'the same key on another route is another request')

      const other = await apiTokenFor(app, await createUser(app, { organization_id: user.organizationId }))
      const independent = await post(app, 'send-bulk', other.token, { recipientIds: [a.id], content: 'once' }, key)
      t.equal(independent.statusCode, 200, 'keys are scoped to their caller')
      t.notOk(independent.headers['idempotent-replayed'])
      t.not(sentIds(independent)[0], sentIds(first)[0])
      t.equal((await inboxOf(app, a)).length, 2)
    })

    t.test('Idempotency-Key: concurrent retries store the send once', async t => {
      const { user, token } = await sender(app)
      const key = { 'idempotency-key': randomUUID() }
      const payload = { recipientId: user.id, content: 'racing' }
      const responses = await Promise.all([1, 2, 3].map(() => post(app, 'send-private', token, payload, key)))
      t.same(responses.map(r => r.statusCode), [200, 200, 200])
      t.same(new Set(responses.map(r => sentIds(r)[0])).size, 1, 'every retry answers with the same message')
      t.equal(responses.filter(r => r.headers['idempotent-replayed'] === 'true').length, 2)
      t.equal((await inboxOf(app, user)).length, 1)
    })

    t.test('Idempotency-Key: a key is remembered for 24 hours', async t => {
      const { user, token } = await sender(app)
      const key = { 'idempotency-key': randomUUID() }
      t.equal((await post(app, 'send-private', token, { recipientId: user.id, content: 'monday' }, key)).statusCode, 200)
      await sql.query("update idempotency_keys set created_at = now() - interval '25 hours' where caller_id = $1", [user.id])
      const later = await post(app, 'send-private', token, { recipientId: user.id, content: 'tuesday' }, key)
      t.equal(later.statusCode, 200, 'an expired key starts afresh')
      t.notOk(later.headers['idempotent-replayed'])
      t.same((await inboxOf(app, user)).map(m => m.content), ['monday', 'tuesday'])
    })

    t.test('Idempotency-Key: a refused send does not use up its key', async t => {
      const { user, token } = await sender(app)
      const key = { 'idempotency-key': randomUUID() }
      t.equal((await post(app, 'send-private', token, { recipientId: 'ghost', content: 'x' }, key)).statusCode, 422)
      const ok = await post(app, 'send-private', token, { recipientId: user.id, content: 'x' }, key)
      t.equal(ok.statusCode, 200)
    })

    t.test('a send to 10,000 recipients succeeds', async t => {
      const { user, token } = await sender(app)
      const prefix = `bulk_${randomUUID()}_`
      await sql.query('insert into users (id, organization_id) select $1 || g, $2 from generate_series(1, 10000) g', [prefix, user.organizationId])
      const recipientIds = Array.from({ length: 10000 }, (_, i) => `${prefix}${i + 1}`)
      published.length = 0

      const res = await post(app, 'send-bulk', token, { recipientIds, content: 'to everyone' })
      t.equal(res.statusCode, 200)
      const body = res.json()
      t.equal(body.count, 10000)
      t.equal(body.messages.length, 10000)
      t.equal(body.messages[9999].recipientId, `${prefix}10000`)
      // One transaction by default (SEND_FIRST_CHUNK 0), delivered as one batch, each recipient once, in order.
      t.same(published.map(batch => batch.messages.length), [10000])
      t.same(published.flatMap(batch => batch.messages.map(m => m.recipientId)), recipientIds)
      t.same(new Set(published.flatMap(batch => batch.messages.map(m => m.id))), new Set([body.messages[0].id]), 'one id for the send')
    })
  })
}

t.test('the messaging routes answer 401 with the documented body to anything but a valid API token', async t => {
  const app = await buildApp(t)
  const user = await createUser(app)
  const revoked = await apiTokenFor(app, user)
  await app.store.revokeApiToken(revoked.id)
  const storedExpired = await apiTokenFor(app, user)
  // A token whose record expired while the token itself carries no expiry.
  const recordExpired = crypto.randomUUID()
  await app.store.createApiToken({ id: recordExpired, userId: user.id, createdBy: null, name: null, expiresAt: new Date(Date.now() - 1000).toISOString() })
  const jwtApi = (app.jwt as unknown as Record<string, { sign (payload: object, options?: object): string }>).api

  const cases: Array<[string, string | undefined]> = [
    ['no token', undefined],
    ['a garbled token', 'Bearer not-a-token'],
    ['not a Bearer header', 'Basic abc'],
    ['an access token', `Bearer ${accessTokenFor(app, user)}`],
    ['a ws ticket', `Bearer ${app.tokens.issueWsTicket(user.id).token}`],
    ['a revoked API token', `Bearer ${revoked.token}`],
    ['an expired API token', `Bearer ${jwtApi.sign({ sub: user.id, exp: Math.floor(Date.now() / 1000) - 60 }, { jti: storedExpired.id })}`],
    ['an API token whose record expired', `Bearer ${app.tokens.issueApi(recordExpired, user.id, null)}`],
    ['an API token of a deleted record', `Bearer ${app.tokens.issueApi(crypto.randomUUID(), user.id, null)}`]
  ]
  const sends: Array<[string, object]> = [
    ['send-bulk', { recipientIds: [user.id], content: 'x' }],
    ['send-private', { recipientId: user.id, content: 'x' }],
    ['send-template', { templateId: randomUUID(), recipientIds: [user.id], placeholders: {} }]
  ]
  for (const [name, authorization] of cases) {
    for (const [route, payload] of sends) {
      const res = await app.inject({ method: 'POST', url: `/api/messages/${route}`, headers: authorization ? { authorization } : {}, payload })
      t.equal(res.statusCode, 401, `${route} with ${name}`)
      t.match(res.json(), { success: false, statusCode: 401, code: 'UNAUTHORIZED' })
      t.equal(res.json().error, 'Unauthorized: Missing or invalid token', `${route} with ${name}: the documented error`)
    }
  }
  t.same(await app.store.inbox(user.id, null, 10), [], 'nothing was stored')
})

t.test('an API token stops working as soon as it is revoked', async t => {
  const app = await buildApp(t)
  const user = await createUser(app)
  const { token, id } = await apiTokenFor(app, user)
  const payload = { recipientId: user.id, content: 'x' }
  t.equal((await post(app, 'send-private', token, payload)).statusCode, 200)
  await app.store.revokeApiToken(id)
  const res = await post(app, 'send-private', token, payload)
  t.equal(res.statusCode, 401)
  t.equal(res.json().error, 'Unauthorized: Missing or invalid token')
})

t.test('limits answer 413 naming the cap, and store nothing', async t => {
  const app = await buildApp(t, { env: { MAX_RECIPIENTS: '3' } })
  const { user, token } = await sender(app)
  const ids = [user.id, 'b', 'c', 'd']
  const res = await post(app, 'send-bulk', token, { recipientIds: ids, content: 'x' })
  t.equal(res.statusCode, 413)
  t.match(res.json(), { success: false, statusCode: 413, code: 'TOO_MANY_RECIPIENTS', error: /at most 3/, details: { maxRecipients: 3 } })
  t.equal((await post(app, 'send-bulk', token, { recipientIds: [user.id, user.id, user.id, user.id], content: 'x' })).statusCode, 200,
    'duplicates count once')

  const template = await app.inject({ method: 'POST', url: '/api/templates', headers: { authorization: `Bearer ${token}` }, payload: { name: 'n', content: '{{x}}' } })
  const tooMany = await post(app, 'send-template', token, { templateId: template.json().template.id, recipientIds: ids, placeholders: { x: 1 } })
  t.equal(tooMany.statusCode, 413)

  // 8,193 two-byte characters: under the cap in characters, over it in bytes.
  const big = 'é'.repeat(8193)
  for (const [route, payload] of [['send-bulk', { recipientIds: [user.id], content: big }], ['send-private', { recipientId: user.id, content: big }]] as const) {
    const tooBig = await post(app, route, token, payload)
    t.equal(tooBig.statusCode, 413, route)
    t.match(tooBig.json(), { success: false, code: 'CONTENT_TOO_LARGE', error: /16384 bytes/, details: { maxContentBytes: 16384 } })
  }
  const rendered = await post(app, 'send-template', token, { templateId: template.json().template.id, recipientIds: [user.id], placeholders: { x: big } })
  t.equal(rendered.statusCode, 413, 'a template is capped once filled')
  t.equal((await app.store.inbox(user.id, null, 10)).length, 1, 'only the accepted send was stored')
})

t.test('a recipient list over the default cap gets the 413, not a schema error', async t => {
  const app = await buildApp(t)
  const { token } = await sender(app)
  const res = await post(app, 'send-bulk', token, { recipientIds: Array.from({ length: 10001 }, (_, i) => `u${i}`), content: 'x' })
  t.equal(res.statusCode, 413)
  t.match(res.json(), { code: 'TOO_MANY_RECIPIENTS', details: { maxRecipients: 10000, recipients: 10001 } })
})

t.test('bad requests get a 400 envelope and store nothing', async t => {
  const app = await buildApp(t, { env: { BODY_LIMIT: '2048' } })
  const { user, token } = await sender(app)
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' }

  const invalidJson = await app.inject({ method: 'POST', url: '/api/messages/send-bulk', headers, payload: '{"recipientIds": [' })
  t.equal(invalidJson.statusCode, 400)
  t.match(invalidJson.json(), { success: false, statusCode: 400, code: 'INVALID_JSON', error: String, message: String })

  const tooLarge = await app.inject({ method: 'POST', url: '/api/messages/send-bulk', headers, payload: JSON.stringify({ recipientIds: [user.id], content: 'x'.repeat(4096) }) })
  t.equal(tooLarge.statusCode, 413)
  t.match(tooLarge.json(), { success: false, statusCode: 413, code: 'PAYLOAD_TOO_LARGE' })

  const bad: Array<[string, string, object, Record<string, string>?]> = [
    ['no recipients', 'send-bulk', { recipientIds: [], content: 'x' }],
    ['no content', 'send-bulk', { recipientIds: [user.id] }],
    ['empty content', 'send-private', { recipientId: user.id, content: '' }],
    ['a recipient id that is not an id', 'send-private', { recipientId: 'a b', content: 'x' }],
    ['an empty Idempotency-Key', 'send-private', { recipientId: user.id, content: 'x' }, { 'idempotency-key': '' }],
    ['a 256-character Idempotency-Key', 'send-private', { recipientId: user.id, content: 'x' }, { 'idempotency-key': 'k'.repeat(256) }],
    ['a non-ASCII Idempotency-Key', 'send-private', { recipientId: user.id, content: 'x' }, { 'idempotency-key': 'clé' }]
  ]
  for (const [name, route, payload, extra] of bad) {
    const res = await post(app, route, token, payload, extra)
    t.equal(res.statusCode, 400, name)
    t.match(res.json(), { success: false, statusCode: 400, code: String, error: String }, name)
  }
  t.equal((await post(app, 'send-private', token, { recipientId: user.id, content: 'x' }, { 'idempotency-key': 'k'.repeat(255) })).statusCode, 200,
    'a 255-character key is fine')
  t.equal((await app.store.inbox(user.id, null, 10)).length, 1)

  const unknownTemplate = await post(app, 'send-template', token, { templateId: 'template123', recipientIds: [user.id] })
  t.equal(unknownTemplate.statusCode, 404, 'a template id that names no template, uuid or not, is a 404')
  t.match(unknownTemplate.json(), { success: false, code: 'TEMPLATE_NOT_FOUND' })
})

t.test('a failed live delivery does not fail the send: the message stays stored', async t => {
  const app = await buildApp(t)
  const { user, token } = await sender(app)
  app.hub.publish = async () => { throw new Error('fan-out unavailable') }
  const res = await post(app, 'send-private', token, { recipientId: user.id, content: 'kept' })
  t.equal(res.statusCode, 200)
  t.match(await inboxOf(app, user), [{ id: sentIds(res)[0], content: 'kept' }])
})

t.test('a send while the store is down answers 503 in the envelope', async t => {
  const driver = await freshPglite()
  const app = await buildApp(t, { driver })
  const { user, token } = await sender(app)
  await driver.close()
  const res = await post(app, 'send-private', token, { recipientId: user.id, content: 'x' })
  t.equal(res.statusCode, 503)
  t.match(res.json(), { success: false, statusCode: 503, code: 'SERVICE_UNAVAILABLE', error: String, message: String })
})
