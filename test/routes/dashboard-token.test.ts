import t from 'tap'
import { createSigner } from 'fast-jwt'
import { buildApp, createUser, TEST_SECRET } from '../helpers/app.js'
import { testBackends } from '../helpers/backends.js'
import { clerkIssuer } from '../helpers/clerk.js'
import { freshPglite } from '../helpers/app.js'

const clerk = clerkIssuer()
const otherClerk = clerkIssuer()
const env = {
  CLERK_JWT_KEY: clerk.publicPem.replace(/\n/g, '\\n'),
  CLERK_AUTHORIZED_PARTIES: 'https://dashboard.example.com'
}
const url = '/api/dashboard-token/generate'

for (const backend of testBackends()) {
  t.test(backend.name, { skip: backend.skip }, async t => {
    t.test('a Clerk session token is exchanged for a 24 h access token carrying the user profile', async t => {
      const app = await buildApp(t, { env, driver: await backend.driver(t) })
      const user = await createUser(app, { clerk_id: 'user_clerk_1', plan_type: 'pro', credits: 42, organization_id: 'org_9' })
      const before = Date.now()
      const res = await app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${clerk.sessionToken()}` } })
      t.equal(res.statusCode, 200)
      const body = res.json()
      t.match(body, { success: true, expires_in: 86400, token_type: 'Bearer', access_token: String, expires_at: String })
      const expiresAt = Date.parse(body.expires_at)
      t.ok(expiresAt >= before + 86400_000 - 1000 && expiresAt <= Date.now() + 86400_000 + 1000, 'expires_at is 24 h ahead')
      t.equal(res.headers['cache-control'], 'no-store')

      const claims = app.tokens.verify('access', body.access_token)
      t.match(claims, { sub: user.id, clerk_id: 'user_clerk_1', email: user.email, plan_type: 'pro', credits: 42, organization_id: 'org_9' })
      t.type(claims.sid, 'string')

      const ticket = await app.inject({ method: 'GET', url: '/websocket-token/', headers: { authorization: `Bearer ${body.access_token}` } })
      t.equal(ticket.statusCode, 200, 'the access token works where access tokens are expected')
    })

    t.test('bad Clerk tokens are refused with 401 in the envelope', async t => {
      const app = await buildApp(t, { env, driver: await backend.driver(t) })
      await createUser(app, { clerk_id: 'user_clerk_1' })
      const now = Math.floor(Date.now() / 1000)
      const ourToken = createSigner({ key: TEST_SECRET, algorithm: 'HS256' })({ sub: 'user_clerk_1', sid: 's', azp: 'https://dashboard.example.com' })
      const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')
      const payload = Buffer.from(JSON.stringify({ sub: 'user_clerk_1', sid: 's', exp: now + 60 })).toString('base64url')

      const cases: Array<[string, Record<string, string>]> = [
        ['no Authorization header', {}],
        ['empty Authorization header', { authorization: '' }],
        ['not a Bearer scheme', { authorization: `Basic ${clerk.sessionToken()}` }],
        ['garbled token', { authorization: 'Bearer not.a.jwt' }],
        ['signed by another key', { authorization: `Bearer ${otherClerk.sessionToken()}` }],
        ['expired', { authorization: `Bearer ${clerk.sessionToken({ iat: now - 600, nbf: now - 600, exp: now - 300 })}` }],
        ['without sid', { authorization: `Bearer ${clerk.sessionToken({ sid: undefined })}` }],
        ['from an unlisted authorized party', { authorization: `Bearer ${clerk.sessionToken({ azp: 'https://evil.example.com' })}` }],
        ['alg none', { authorization: `Bearer ${header}.${payload}.` }],
        ['one of our own HS256 tokens', { authorization: `Bearer ${ourToken}` }]
      ]
      for (const [name, headers] of cases) {
        const res = await app.inject({ method: 'POST', url, headers })
        t.equal(res.statusCode, 401, name)
        t.match(res.json(), { success: false, statusCode: 401, code: 'UNAUTHORIZED', error: String, message: String }, `${name}: envelope`)
      }
    })

    t.test('our access token is refused here and a Clerk token is refused where ours are expected', async t => {
      const app = await buildApp(t, { env, driver: await backend.driver(t) })
      const user = await createUser(app, { clerk_id: 'user_clerk_1' })
      const access = app.tokens.issueAccess(user).token
      t.equal((await app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${access}` } })).statusCode, 401)
      const res = await app.inject({ method: 'GET', url: '/websocket-token/', headers: { authorization: `Bearer ${clerk.sessionToken()}` } })
      t.equal(res.statusCode, 401)
    })

    t.test('a valid session of a user missing from the database is a 404', async t => {
      const app = await buildApp(t, { env, driver: await backend.driver(t) })
      const res = await app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${clerk.sessionToken({ sub: 'user_unknown' })}` } })
      t.equal(res.statusCode, 404)
      t.match(res.json(), { success: false, error: 'User not found in database' })
    })
  })
}

t.test('a store that is down gives 503, not 500 and not a hang', async t => {
  const driver = await freshPglite()
  const app = await buildApp(t, { env, driver })
  await driver.close()
  const res = await app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${clerk.sessionToken()}` } })
  t.equal(res.statusCode, 503)
  t.match(res.json(), { success: false, statusCode: 503, code: 'SERVICE_UNAVAILABLE' })
  t.equal(res.headers['retry-after'], '5')
})

t.test('without Clerk configuration the route says so with 503', async t => {
  const app = await buildApp(t)
  const res = await app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${clerk.sessionToken()}` } })
  t.equal(res.statusCode, 503)
  t.match(res.json(), { code: 'CLERK_NOT_CONFIGURED' })
})
