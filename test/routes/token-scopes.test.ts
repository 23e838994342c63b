import t from 'tap'
import { accessTokenFor, buildApp, createUser } from '../helpers/app.js'
import { testBackends, type TestBackend } from '../helpers/backends.js'

const url = '/api/admin/tokens'

async function setup (t: Parameters<typeof buildApp>[0], backend: TestBackend) {
  const app = await buildApp(t, { driver: await backend.driver(t) })
  const admin = await createUser(app, { role: 'admin', name: 'Admin User' })
  const sender = await createUser(app, { name: 'Sender' })
  const recipient = await createUser(app, { name: 'Recipient' })
  const adminAuth = { authorization: `Bearer ${accessTokenFor(app, admin)}` }
  /** Mints through the admin route, as an administrator would. */
  const mint = async (userId: string, scopes?: string[]) => {
    const res = await app.inject({ method: 'POST', url, headers: adminAuth, payload: { userId, ...(scopes ? { scopes } : {}) } })
    t.equal(res.statusCode, 201, 'minted')
    return res.json() as { token: string, tokenId: string, scopes: string[] | null }
  }
  const inboxOf = async (userId: string) => (await app.inject({
    method: 'GET', url: '/api/messages/inbox', headers: { authorization: `Bearer ${accessTokenFor(app, { ...recipient, id: userId })}` }
  })).json().messages as unknown[]
  return { app, admin, sender, recipient, adminAuth, mint, inboxOf }
}

for (const backend of testBackends()) {
  t.test(backend.name, { skip: backend.skip }, async t => {
    t.test('a token minted with scopes shows them when minted and listed; one without shows null', async t => {
      const { app, sender, adminAuth, mint } = await setup(t, backend)
      const scoped = await mint(sender.id, ['messages:send-private', 'inbox:read'])
      t.same(scoped.scopes, ['messages:send-private', 'inbox:read'])
      const unscoped = await mint(sender.id)
      t.equal(unscoped.scopes, null)
      const listed = (await app.inject({ method: 'GET', url: `${url}?userId=${sender.id}`, headers: adminAuth })).json().tokens
      t.same(listed.find((r: { id: string }) => r.id === scoped.tokenId).scopes, ['messages:send-private', 'inbox:read'])
      t.equal(listed.find((r: { id: string }) => r.id === unscoped.tokenId).scopes, null)
    })

    t.test('a scoped token reaches its routes and gets 403 naming the missing scope elsewhere; nothing is sent', async t => {
      const { app, sender, recipient, mint, inboxOf } = await setup(t, backend)
      const { token } = await mint(sender.id, ['messages:send-private'])
      const auth = { authorization: `Bearer ${token}` }

      const ok = await app.inject({ method: 'POST', url: '/api/messages/send-private', headers: auth, payload: { recipientId: recipient.id, content: 'allowed' } })
      t.equal(ok.statusCode, 200, ok.body)

      const bulk = await app.inject({ method: 'POST', url: '/api/messages/send-bulk', headers: auth, payload: { recipientIds: [recipient.id], content: 'refused' } })
      t.equal(bulk.statusCode, 403)
      t.same(bulk.json(), {
        success: false,
        statusCode: 403,
        status: 403,
        code: 'INSUFFICIENT_SCOPE',
        error: 'Forbidden: the token lacks the scope "messages:send-bulk"',
        message: 'Forbidden: the token lacks the scope "messages:send-bulk"',
        details: { requiredScope: 'messages:send-bulk' }
      })
      const contents = (await inboxOf(recipient.id)).map(m => (m as { content: string }).content)
      t.same(contents, ['allowed'], 'the refused send stored nothing')

      const cases: Array<[string, string, string, unknown?]> = [
        ['POST', '/api/messages/send-template', 'messages:send-template', { templateId: crypto.randomUUID(), recipientIds: [recipient.id] }],
        ['GET', '/api/templates', 'templates:read'],
        ['GET', `/api/templates/${crypto.randomUUID()}`, 'templates:read'],
        ['POST', '/api/templates', 'templates:write', { name: 'n', content: 'c' }],
        ['DELETE', `/api/templates/${crypto.randomUUID()}`, 'templates:write'],
        ['GET', '/api/messages/inbox', 'inbox:read'],
        ['POST', '/api/messages/ack', 'inbox:read', { ids: [crypto.randomUUID()] }]
      ]
      for (const [method, path, scope, payload] of cases) {
        const res = await app.inject({ method: method as 'GET', url: path, headers: auth, ...(payload ? { payload: payload as object } : {}) })
        t.equal(res.statusCode, 403, `${method} ${path}`)
        t.match(res.json(), { code: 'INSUFFICIENT_SCOPE', details: { requiredScope: scope } }, `${method} ${path} names ${scope}`)
      }
      const templates = await app.inject({ method: 'GET', url: '/api/templates', headers: { authorization: `Bearer ${accessTokenFor(app, sender)}` } })
      t.same(templates.json().templates, [], 'the refused template write stored nothing')
    })

    t.test('the scope is checked before the body: a scoped token learns nothing about the format', async t => {
      const { app, sender, mint } = await setup(t, backend)
      const { token } = await mint(sender.id, ['inbox:read'])
      const res = await app.inject({ method: 'POST', url: '/api/messages/send-bulk', headers: { authorization: `Bearer ${token}` }, payload: { nonsense: true } })
      t.equal(res.statusCode, 403)
      t.equal(res.json().code, 'INSUFFICIENT_SCOPE')
    })

    t.test('a token minted without scopes does everything its owner may, as before', async t => {
      const { app, sender, recipient, mint, inboxOf } = await setup(t, backend)
      const { token } = await mint(sender.id)
      const auth = { authorization: `Bearer ${token}` }
      const template = await app.inject({ method: 'POST', url: '/api/templates', headers: auth, payload: { name: 'hi', content: 'Hi {{name}}' } })
      t.equal(template.statusCode, 201)
      const sends = [
        ['/api/messages/send-bulk', { recipientIds: [recipient.id], content: 'bulk' }],
        ['/api/messages/send-private', { recipientId: recipient.id, content: 'private' }],
        ['/api/messages/send-template', { templateId: template.json().template.id, recipientIds: [recipient.id], placeholders: { name: 'R' } }]
      ] as const
      for (const [path, payload] of sends) {
        const res = await app.inject({ method: 'POST', url: path, headers: auth, payload })
        t.equal(res.statusCode, 200, path)
      }
      t.equal((await inboxOf(recipient.id)).length, 3)
      t.equal((await app.inject({ method: 'GET', url: '/api/messages/inbox', headers: auth })).statusCode, 200)
      t.equal((await app.inject({ method: 'GET', url: '/api/templates', headers: auth })).statusCode, 200)
    })

    t.test("admin routes need tokens:admin on a scoped token, and the owner's admin role whatever the scopes", async t => {
      const { app, admin, sender, mint } = await setup(t, backend)
      const narrow = await mint(admin.id, ['messages:send-bulk'])
      const refused = await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${narrow.token}` } })
      t.equal(refused.statusCode, 403)
      t.match(refused.json(), { code: 'INSUFFICIENT_SCOPE', details: { requiredScope: 'tokens:admin' } })

      const tokenAdmin = await mint(admin.id, ['tokens:admin'])
      const listed = await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${tokenAdmin.token}` } })
      t.equal(listed.statusCode, 200)

      const notAdmin = await mint(sender.id, ['tokens:admin'])
      const denied = await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${notAdmin.token}` } })
      t.equal(denied.statusCode, 403)
      t.equal(denied.json().code, 'FORBIDDEN', 'a scope grants nothing the owner may not do')
    })

    t.test('unknown, empty or repeated scopes are a 400 and mint nothing', async t => {
      const { app, sender, adminAuth } = await setup(t, backend)
      for (const scopes of [['messages:send-everything'], [], ['inbox:read', 'inbox:read'], 'inbox:read', [null]]) {
        const res = await app.inject({ method: 'POST', url, headers: adminAuth, payload: { userId: sender.id, scopes } })
        t.equal(res.statusCode, 400, JSON.stringify(scopes))
        t.equal(res.json().code, 'VALIDATION_ERROR')
      }
      const listed = (await app.inject({ method: 'GET', url: `${url}?userId=${sender.id}`, headers: adminAuth })).json().tokens
      t.same(listed, [])
    })
  })
}
