import t from 'tap'
import { accessTokenFor, apiTokenFor, buildApp, createUser } from '../helpers/app.js'
import { testBackends, type TestBackend } from '../helpers/backends.js'

const url = '/api/admin/tokens'
const future = () => new Date(Date.now() + 86400_000).toISOString()

async function setup (t: Parameters<typeof buildApp>[0], backend: TestBackend) {
  const app = await buildApp(t, { driver: await backend.driver(t) })
  const admin = await createUser(app, { role: 'admin', name: 'Admin User' })
  const user = await createUser(app, { name: 'Regular User' })
  const auth = { authorization: `Bearer ${accessTokenFor(app, admin)}` }
  return { app, admin, user, auth }
}

for (const backend of testBackends()) {
  t.test(backend.name, { skip: backend.skip }, async t => {
    t.test('an admin mints an API token for a user, as the admin form sends it', async t => {
      const { app, admin, user, auth } = await setup(t, backend)
      const expiration = future()
      const res = await app.inject({ method: 'POST', url, headers: auth, payload: { userId: user.id, expiration } })
      t.equal(res.statusCode, 201)
      const body = res.json()
      t.match(body, { success: true, token: String, name: 'Regular User', tokenId: String, expiresAt: expiration })
      t.equal(res.headers['cache-control'], 'no-store')

      const claims = app.tokens.verify('api', body.token)
      t.equal(claims.sub, user.id)
      t.equal(claims.jti, body.tokenId)

      const listed = await app.inject({ method: 'GET', url: `${url}?userId=${user.id}`, headers: auth })
      t.equal(listed.statusCode, 200)
      t.match(listed.json().tokens, [{ id: body.tokenId, userId: user.id, createdBy: admin.id, expiresAt: expiration, revokedAt: null }])
      t.notOk(listed.body.includes(body.token), 'the token string is never listed')
    })

    t.test('expiration null or absent never expires; a name labels the token', async t => {
      const { app, user, auth } = await setup(t, backend)
      const res = await app.inject({ method: 'POST', url, headers: auth, payload: { userId: user.id, expiration: null, name: 'ci' } })
      t.equal(res.statusCode, 201)
      t.equal(res.json().expiresAt, null)
      t.equal(app.tokens.verify('api', res.json().token).exp, undefined, 'no exp claim')
      const plain = await app.inject({ method: 'POST', url, headers: auth, payload: { userId: user.id } })
      t.equal(plain.statusCode, 201)
      const listed = (await app.inject({ method: 'GET', url: `${url}?userId=${user.id}`, headers: auth })).json().tokens
      t.equal(listed.length, 2)
      t.ok(listed.some((tk: { name: string | null }) => tk.name === 'ci'))
    })

    t.test('an admin API token can mint too, and the new token authorizes the admin routes only if its owner is an admin', async t => {
      const { app, admin, user, auth } = await setup(t, backend)
      const adminApi = await apiTokenFor(app, admin)
      const res = await app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${adminApi.token}` }, payload: { userId: user.id } })
      t.equal(res.statusCode, 201)
      const userToken = res.json().token
      const denied = await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${userToken}` } })
      t.equal(denied.statusCode, 403)
      t.ok(auth)
    })

    t.test('bad requests are 400s that change nothing', async t => {
      const { app, user, auth } = await setup(t, backend)
      const cases: Array<[string, unknown, RegExp]> = [
        ['missing userId', {}, /^User ID is required$/],
        ['empty userId', { userId: '' }, /.+/],
        ['expiration in the past', { userId: user.id, expiration: '2020-01-01T00:00:00.000Z' }, /future/],
        ['expiration not a date', { userId: user.id, expiration: 'tomorrow' }, /ISO-8601/],
        ['expiration a number', { userId: user.id, expiration: 12 }, /.+/],
        ['expiration a loose date', { userId: user.id, expiration: '1' }, /ISO-8601/]
      ]
      for (const [name, payload, message] of cases) {
        const res = await app.inject({ method: 'POST', url, headers: auth, payload: payload as object })
        t.equal(res.statusCode, 400, name)
        t.match(res.json(), { success: false, statusCode: 400, message }, `${name}: message`)
      }
      const listed = await app.inject({ method: 'GET', url: `${url}?userId=${user.id}`, headers: auth })
      t.same(listed.json().tokens, [], 'no token was created')

      const json = await app.inject({ method: 'POST', url, headers: { ...auth, 'content-type': 'application/json' }, payload: '{"userId":' })
      t.equal(json.statusCode, 400)
      t.match(json.json(), { success: false, code: 'INVALID_JSON' })
    })

    t.test('an unknown user is a 404', async t => {
      const { app, auth } = await setup(t, backend)
      const res = await app.inject({ method: 'POST', url, headers: auth, payload: { userId: 'nobody' } })
      t.equal(res.statusCode, 404)
      t.match(res.json(), { success: false, statusCode: 404, message: 'User not found' })
    })

    t.test('callers who are not admins get 401 or 403 before their body is looked at', async t => {
      const { app, user } = await setup(t, backend)
      const userAccess = accessTokenFor(app, user)
      const forbidden = await app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${userAccess}` }, payload: { nonsense: true } })
      t.equal(forbidden.statusCode, 403)
      t.match(forbidden.json(), { success: false, statusCode: 403, code: 'FORBIDDEN' })

      t.equal((await app.inject({ method: 'POST', url, payload: { userId: user.id } })).statusCode, 401, 'no token')
      const ticket = app.tokens.issueWsTicket(user.id).token
      t.equal((await app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${ticket}` }, payload: { userId: user.id } })).statusCode, 401, 'ws ticket')
    })

    t.test('admin rights come from the database at request time', async t => {
      const { app, admin, user, auth } = await setup(t, backend)
      t.equal((await app.inject({ method: 'GET', url, headers: auth })).statusCode, 200)
      await app.store.upsertUser({ id: admin.id, role: 'user' })
      t.equal((await app.inject({ method: 'GET', url, headers: auth })).statusCode, 403, 'demoted: the same token is refused')
      await app.store.upsertUser({ id: user.id, role: 'admin' })
      const promoted = { authorization: `Bearer ${accessTokenFor(app, { ...user, role: 'user' })}` }
      t.equal((await app.inject({ method: 'GET', url, headers: promoted })).statusCode, 200, 'promoted: a token minted before works')
    })

    t.test('revocation takes effect on the next request; expired tokens are refused', async t => {
      const { app, admin, auth } = await setup(t, backend)
      const api = await apiTokenFor(app, admin)
      const bearer = { authorization: `Bearer ${api.token}` }
      t.equal((await app.inject({ method: 'GET', url, headers: bearer })).statusCode, 200)

      const revoked = await app.inject({ method: 'DELETE', url: `${url}/${api.id}`, headers: auth })
      t.equal(revoked.statusCode, 200)
      t.match(revoked.json(), { success: true, token: { id: api.id, revokedAt: String } })
      const next = await app.inject({ method: 'GET', url, headers: bearer })
      t.equal(next.statusCode, 401)
      t.match(next.json(), { success: false, error: 'Unauthorized: Missing or invalid token' })

      const again = await app.inject({ method: 'DELETE', url: `${url}/${api.id}`, headers: auth })
      t.equal(again.json().token.revokedAt, revoked.json().token.revokedAt, 'revoking twice keeps the first time')
      t.equal((await app.inject({ method: 'DELETE', url: `${url}/no-such-token`, headers: auth })).statusCode, 404)

      const soon = await apiTokenFor(app, admin, new Date(Date.now() + 1000))
      await new Promise(resolve => setTimeout(resolve, 1100))
      t.equal((await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${soon.token}` } })).statusCode, 401, 'expired')
    })

    t.test('last use is recorded', async t => {
      const { app, admin, auth } = await setup(t, backend)
      const api = await apiTokenFor(app, admin)
      await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${api.token}` } })
      const listed = (await app.inject({ method: 'GET', url: `${url}?userId=${admin.id}`, headers: auth })).json().tokens
      t.type(listed.find((tk: { id: string }) => tk.id === api.id).lastUsedAt, 'string')
    })
  })
}
