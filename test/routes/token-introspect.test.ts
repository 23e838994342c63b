import t from 'tap'
import { accessTokenFor, apiTokenFor, buildApp, createUser } from '../helpers/app.js'
import { testBackends, type TestBackend } from '../helpers/backends.js'

const url = '/api/tokens/introspect'
const CREDENTIAL = 'introspection-credential-0123456789abcdef'

async function setup (t: Parameters<typeof buildApp>[0], backend: TestBackend) {
  const app = await buildApp(t, { driver: await backend.driver(t), env: { INTROSPECTION_TOKEN: CREDENTIAL } })
  const admin = await createUser(app, { role: 'admin' })
  const user = await createUser(app)
  const adminAuth = { authorization: `Bearer ${accessTokenFor(app, admin)}` }
  const mint = async (payload: Record<string, unknown>) =>
    (await app.inject({ method: 'POST', url: '/api/admin/tokens', headers: adminAuth, payload: { userId: user.id, ...payload } })).json() as { token: string, tokenId: string }
  const introspect = async (token: string, headers: Record<string, string> = adminAuth) =>
    await app.inject({ method: 'POST', url, headers, payload: { token } })
  return { app, admin, user, adminAuth, mint, introspect }
}

for (const backend of testBackends()) {
  t.test(backend.name, { skip: backend.skip }, async t => {
    t.test('an active API token: RFC 7662 fields with its scopes', async t => {
      const { user, mint, introspect } = await setup(t, backend)
      const expiration = new Date(Date.now() + 3600_000)
      const scoped = await mint({ scopes: ['inbox:read', 'messages:send-bulk'], expiration: expiration.toISOString() })
      const res = await introspect(scoped.token)
      t.equal(res.statusCode, 200)
      t.equal(res.headers['cache-control'], 'no-store')
      t.same(res.json(), {
        active: true,
        sub: user.id,
        scope: 'inbox:read messages:send-bulk',
        exp: Math.floor(expiration.getTime() / 1000),
        iat: res.json().iat,
        jti: scoped.tokenId,
        iss: 'gatehouse',
        aud: 'gatehouse:api',
        token_type: 'api'
      })

      const unscoped = (await introspect((await mint({})).token)).json()
      t.equal(unscoped.active, true)
      t.equal(unscoped.scope, 'messages:send-template messages:send-bulk messages:send-private templates:read templates:write inbox:read',
        'an unscoped token lists what its (non-admin) owner may use')
      t.notOk('exp' in unscoped, 'a token that never expires has no exp')
    })

    t.test('every inactive reason', async t => {
      const { app, user, mint, introspect } = await setup(t, backend)
      const revoked = await mint({})
      await app.store.revokeApiToken(revoked.tokenId)
      const expired = await apiTokenFor(app, user, new Date(Date.now() - 60_000))
      const notStored = app.tokens.issueApi(crypto.randomUUID(), user.id, null)
      const genuine = (await mint({})).token
      const [h, p, s] = genuine.split('.')
      const tampered = `${h}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), sub: 'admin' })).toString('base64url')}.${s}`
      const ticket = (await app.inject({ method: 'GET', url: '/websocket-token/', headers: { authorization: `Bearer ${accessTokenFor(app, user)}` } })).json().token

      const cases: Array<[string, string, string]> = [
        ['revoked', revoked.token, 'revoked'],
        ['expired', expired.token, 'expired'],
        ['signed by us, no such token', notStored, 'unknown'],
        ['tampered', tampered, 'unknown'],
        ['not a JWT', 'not-a-token', 'unknown'],
        ['an access token', accessTokenFor(app, user), 'wrong_kind'],
        ['a ws ticket', ticket, 'wrong_kind']
      ]
      for (const [what, token, reason] of cases) {
        const res = await introspect(token)
        t.equal(res.statusCode, 200, what)
        t.same(res.json(), { active: false, reason }, what)
      }
      t.equal((await introspect(genuine)).json().active, true, 'the untampered token is active')

      await app.store.deleteUser({ id: user.id })
      t.same((await introspect(genuine)).json(), { active: false, reason: 'unknown' }, "a deleted owner's token")
    })

    t.test('answers as current as authentication, reading the store only for a quota', async t => {
      const { app, user, adminAuth, mint, introspect } = await setup(t, backend)
      const plain = await mint({})
      const limited = await mint({ sendQuota: 3 })
      const reads = new Map<string, number>()
      const authenticate = app.store.authenticateApiToken.bind(app.store)
      app.store.authenticateApiToken = async (id: string) => {
        reads.set(id, (reads.get(id) ?? 0) + 1)
        return await authenticate(id)
      }

      for (let i = 0; i < 3; i++) t.equal((await introspect(plain.token)).json().active, true)
      t.equal(reads.get(plain.tokenId), 1, 'a token without a quota is read once, then answered from the cache')

      t.equal((await introspect(limited.token)).json().send_quota_remaining, 3)
      const sent = await app.inject({ method: 'POST', url: '/api/messages/send-private', headers: { authorization: `Bearer ${limited.token}` }, payload: { recipientId: user.id, content: 'hi' } })
      t.equal(sent.statusCode, 200)
      t.equal((await introspect(limited.token)).json().send_quota_remaining, 2, 'what is left of a quota is read from the store on every call')

      const revoked = await app.inject({ method: 'DELETE', url: `/api/admin/tokens/${plain.tokenId}`, headers: adminAuth })
      t.equal(revoked.statusCode, 200)
      t.same((await introspect(plain.token)).json(), { active: false, reason: 'revoked' }, 'a revocation is seen from the next call')
      const other = await mint({})
      t.equal((await introspect(other.token)).json().active, true)
      await app.store.deleteUser({ id: user.id })
      t.same((await introspect(other.token)).json(), { active: false, reason: 'unknown' }, "so is the owner's removal")
    })

    t.test('who may introspect: the configured credential, or an administrator with the scope', async t => {
      const { app, admin, user, mint, introspect } = await setup(t, backend)
      const { token } = await mint({})

      t.equal((await introspect(token, { authorization: `Bearer ${CREDENTIAL}` })).json().active, true, 'the introspection credential')
      const anonymous = await app.inject({ method: 'POST', url, payload: { token } })
      t.equal(anonymous.statusCode, 401)
      t.equal(anonymous.json().code, 'UNAUTHORIZED')
      const wrong = await introspect(token, { authorization: `Bearer ${CREDENTIAL}x` })
      t.equal(wrong.statusCode, 401, 'a wrong credential')
      const nonAdmin = await introspect(token, { authorization: `Bearer ${accessTokenFor(app, user)}` })
      t.equal(nonAdmin.statusCode, 403)

      const mintFor = async (scopes: string[]) => (await app.inject({
        method: 'POST', url: '/api/admin/tokens', headers: { authorization: `Bearer ${accessTokenFor(app, admin)}` }, payload: { userId: admin.id, scopes }
      })).json().token as string
      const noScope = await introspect(token, { authorization: `Bearer ${await mintFor(['tokens:admin'])}` })
      t.equal(noScope.statusCode, 403)
      t.match(noScope.json(), { code: 'INSUFFICIENT_SCOPE', details: { requiredScope: 'tokens:introspect' } })
      const withScope = await introspect(token, { authorization: `Bearer ${await mintFor(['tokens:introspect'])}` })
      t.equal(withScope.json().active, true, 'a resource server holding only tokens:introspect')

      const missing = await app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${CREDENTIAL}` }, payload: {} })
      t.equal(missing.statusCode, 400)
      t.equal(missing.json().code, 'VALIDATION_ERROR')
    })
  })
}
