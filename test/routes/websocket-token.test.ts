import t from 'tap'
import { createSigner } from 'fast-jwt'
import { accessTokenFor, apiTokenFor, buildApp, createUser } from '../helpers/app.js'
import { testBackends } from '../helpers/backends.js'

for (const backend of testBackends()) {
  t.test(backend.name, { skip: backend.skip }, async t => {
    t.test('an access token in Authorization or in the access_token cookie gets a single-use ws ticket', async t => {
      const app = await buildApp(t, { env: { WS_TOKEN_TTL: '30' }, driver: await backend.driver(t) })
      const user = await createUser(app)
      const access = accessTokenFor(app, user)

      for (const url of ['/websocket-token/', '/websocket-token']) {
        const res = await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${access}` } })
        t.equal(res.statusCode, 200, `${url} with Bearer`)
        t.match(res.json(), { token: String, expires_in: 30 })
        t.equal(res.headers['cache-control'], 'no-store')
        const claims = app.tokens.verify('ws', res.json().token)
        t.equal(claims.sub, user.id, 'the ticket names the user')
      }

      const cookie = await app.inject({ method: 'GET', url: '/websocket-token/', cookies: { access_token: access } })
      t.equal(cookie.statusCode, 200, 'cookie, as the browser sends it')
      const again = await app.inject({ method: 'GET', url: '/websocket-token/', cookies: { access_token: access } })
      t.not(again.json().token, cookie.json().token, 'every call gives a new ticket')
    })

    t.test('anything but a valid access token is a 401 in the envelope', async t => {
      const app = await buildApp(t, { driver: await backend.driver(t) })
      const user = await createUser(app)
      const api = await apiTokenFor(app, user)
      const ticket = app.tokens.issueWsTicket(user.id).token
      const otherSecret = createSigner({ key: 'another-secret-another-secret-another-secret', algorithm: 'HS256' })({ sub: user.id, aud: 'gatehouse:access', iss: 'gatehouse' })
      const expired = createSigner({ key: 'test-secret-test-secret-test-secret-0123456789', algorithm: 'HS256' })({
        sub: user.id, aud: 'gatehouse:access', iss: 'gatehouse', exp: Math.floor(Date.now() / 1000) - 10
      })
      const noneHeader = Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')
      const nonePayload = Buffer.from(JSON.stringify({ sub: user.id, aud: 'gatehouse:access', iss: 'gatehouse' })).toString('base64url')

      const cases: Array<[string, { headers?: Record<string, string>, cookies?: Record<string, string> }]> = [
        ['nothing', {}],
        ['garbled Authorization', { headers: { authorization: 'Bearer' } }],
        ['garbled token', { headers: { authorization: 'Bearer abc.def' } }],
        ['alg none', { headers: { authorization: `Bearer ${noneHeader}.${nonePayload}.` } }],
        ['another secret', { headers: { authorization: `Bearer ${otherSecret}` } }],
        ['expired', { headers: { authorization: `Bearer ${expired}` } }],
        ['an api token (wrong kind)', { headers: { authorization: `Bearer ${api.token}` } }],
        ['a ws ticket (wrong kind)', { headers: { authorization: `Bearer ${ticket}` } }],
        ['an api token in the cookie', { cookies: { access_token: api.token } }],
        ['a garbage cookie', { cookies: { access_token: '%%%' } }],
        ['an empty cookie', { headers: { cookie: 'access_token=' } }],
        ['a malformed Cookie header', { headers: { cookie: '=;;access_token;%E0%A4%A=\u0000' } }],
        ['the token under another cookie name', { headers: { cookie: `token=${accessTokenFor(app, user)}` } }]
      ]
      for (const [name, request] of cases) {
        const res = await app.inject({ method: 'GET', url: '/websocket-token/', ...request })
        t.equal(res.statusCode, 401, name)
        t.match(res.json(), { success: false, statusCode: 401, code: 'UNAUTHORIZED' }, `${name}: envelope`)
      }
    })

    t.test('a removed user cannot get a ticket with a token issued before removal', async t => {
      const app = await buildApp(t, { driver: await backend.driver(t) })
      const user = await createUser(app)
      const access = accessTokenFor(app, user)
      await app.store.deleteUser({ id: user.id })
      const res = await app.inject({ method: 'GET', url: '/websocket-token/', headers: { authorization: `Bearer ${access}` } })
      t.equal(res.statusCode, 401)
    })
  })
}
