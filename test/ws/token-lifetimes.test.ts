import t, { type Test } from 'tap'
import { randomUUID } from 'node:crypto'
import FakeTimers from '@sinonjs/fake-timers'
import { createSigner } from 'fast-jwt'
import type { FastifyInstance } from 'fastify'
import { ISSUER, TOKEN_KINDS } from '../../plugins/external/jwt.js'
import { buildApp, createUser, TEST_SECRET } from '../helpers/app.js'
import { clerkIssuer } from '../helpers/clerk.js'
import { listen, Peer, refused, wsUrl } from './helpers.js'

/*
 * Lifetimes are checked on tokens the service hands out over HTTP, then used
 * after the clock is moved past them. Only `Date` is faked: timers, sockets and
 * the store run for real, and the wall clock jumps instead of the test waiting.
 */

const clerk = clerkIssuer()
const env = {
  CLERK_JWT_KEY: clerk.publicPem.replace(/\n/g, '\\n'),
  CLERK_AUTHORIZED_PARTIES: 'https://dashboard.example.com',
  ACCESS_TOKEN_TTL: '86400',
  WS_TOKEN_TTL: '60'
}

interface Claims { sub: string, iat: number, exp?: number, sexp?: number, jti?: string }
const decode = (token: string): Claims => JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString())

/** A clock that moves on by itself and can jump ahead; restored when the test ends. */
function fakeClock (t: Test) {
  const clock = FakeTimers.install({ now: Date.now(), toFake: ['Date'], shouldAdvanceTime: true })
  t.after(() => clock.uninstall())
  return clock
}

async function accessTokenFromDashboard (app: FastifyInstance) {
  const res = await app.inject({ method: 'POST', url: '/api/dashboard-token/generate', headers: { authorization: `Bearer ${clerk.sessionToken()}` } })
  if (res.statusCode !== 200) throw new Error(`exchange failed: ${res.statusCode}`)
  return res.json() as { access_token: string, expires_in: number, expires_at: string }
}

async function ticketFromRoute (app: FastifyInstance, access: string) {
  const res = await app.inject({ method: 'GET', url: '/websocket-token/', headers: { authorization: `Bearer ${access}` } })
  return { statusCode: res.statusCode, body: res.json() as { token: string, expires_in: number } }
}

t.test('an access token lives exactly ACCESS_TOKEN_TTL seconds, then is refused', async t => {
  const app = await buildApp(t, { env })
  await createUser(app, { clerk_id: 'user_clerk_1' })
  const clock = fakeClock(t)

  const issuedAt = Date.now()
  const issued = await accessTokenFromDashboard(app)
  const claims = decode(issued.access_token)
  t.equal(claims.exp! - claims.iat, 86400, 'exp - iat is the configured lifetime')
  t.equal(issued.expires_in, 86400)
  t.equal(Date.parse(issued.expires_at), claims.exp! * 1000, 'expires_at is the exp claim')

  clock.setSystemTime(issuedAt + (86400 - 2) * 1000)
  t.equal((await ticketFromRoute(app, issued.access_token)).statusCode, 200, 'shortly before ACCESS_TOKEN_TTL it still works')

  clock.setSystemTime(issuedAt + (86400 + 1) * 1000)
  const late = await app.inject({ method: 'GET', url: '/websocket-token/', headers: { authorization: `Bearer ${issued.access_token}` } })
  t.equal(late.statusCode, 401, 'a second after the end it is refused')
  t.match(late.json(), { success: false, statusCode: 401, code: 'UNAUTHORIZED' })
})

t.test('a ws ticket lives exactly WS_TOKEN_TTL seconds and carries the session end', async t => {
  const app = await buildApp(t, { env: { ...env, WS_TOKEN_TTL: '5' } })
  await createUser(app, { clerk_id: 'user_clerk_1' })
  const base = await listen(app)
  const clock = fakeClock(t)

  const access = decode((await accessTokenFromDashboard(app)).access_token)
  const { access_token: accessToken } = await accessTokenFromDashboard(app)
  const issuedAt = Date.now()
  const first = await ticketFromRoute(app, accessToken)
  t.equal(first.body.expires_in, 5)
  const claims = decode(first.body.token)
  t.equal(claims.exp! - claims.iat, 5, 'exp - iat is WS_TOKEN_TTL')
  t.equal(claims.sexp, access.exp, 'sexp is the access token exp, in seconds')

  clock.setSystemTime(issuedAt + (5 + 1) * 1000)
  const res = await refused(wsUrl(base, first.body.token))
  t.equal(res.statusCode, 401, 'the ticket is refused once its lifetime is over')
  t.match(res.body, { success: false, statusCode: 401, code: 'UNAUTHORIZED' })

  const second = await ticketFromRoute(app, accessToken)
  await Peer.ready(t, wsUrl(base, second.body.token))
  t.pass('a ticket used within its lifetime opens a socket')
})

t.test('an open socket is closed with 4001 when the access token behind it expires', async t => {
  const app = await buildApp(t, { env: { ...env, WS_HEARTBEAT_MS: '100' } })
  await createUser(app, { clerk_id: 'user_clerk_1' })
  const base = await listen(app)
  const clock = fakeClock(t)

  const issuedAt = Date.now()
  const { access_token: accessToken } = await accessTokenFromDashboard(app)
  const byTicket = await Peer.ready(t, wsUrl(base, (await ticketFromRoute(app, accessToken)).body.token))
  const byHeader = await Peer.ready(t, wsUrl(base), { headers: { authorization: `Bearer ${accessToken}` } })

  clock.setSystemTime(issuedAt + (86400 - 60) * 1000)
  await new Promise(resolve => setTimeout(resolve, 300))
  t.equal(app.hub.connections, 2, 'both sockets stay open until the token ends')

  clock.setSystemTime(issuedAt + (86400 + 1) * 1000)
  t.match((await byTicket.untilClosed()).closed, { code: 4001, reason: 'token expired' }, 'opened with a ticket')
  t.match((await byHeader.untilClosed()).closed, { code: 4001, reason: 'token expired' }, 'opened with the access token')
})

t.test('an API token expires at its expiration', async t => {
  const app = await buildApp(t, { env })
  await createUser(app, { clerk_id: 'user_clerk_1', role: 'admin' })
  const user = await createUser(app)
  const { access_token: accessToken } = await accessTokenFromDashboard(app)
  const expiration = new Date(Date.now() + 3_600_000)
  const res = await app.inject({
    method: 'POST',
    url: '/api/admin/tokens',
    headers: { authorization: `Bearer ${accessToken}` },
    payload: { userId: user.id, expiration: expiration.toISOString() }
  })
  t.equal(res.statusCode, 201)
  const claims = decode(res.json().token)
  t.equal(claims.exp, Math.floor(expiration.getTime() / 1000), 'exp is the expiration, in seconds')
  t.equal(claims.sub, user.id)

  const clock = fakeClock(t)
  const templates = async () => (await app.inject({ url: '/api/templates', headers: { authorization: `Bearer ${res.json().token}` } })).statusCode
  t.equal(await templates(), 200, 'used as soon as minted')
  clock.setSystemTime(expiration.getTime() - 2000)
  t.equal(await templates(), 200, 'and until shortly before its expiration')
  clock.setSystemTime(expiration.getTime() + 1000)
  t.equal(await templates(), 401, 'a second after it, refused')

  const forever = await app.inject({ method: 'POST', url: '/api/admin/tokens', headers: { authorization: `Bearer ${accessToken}` }, payload: { userId: user.id } })
  t.notOk('exp' in decode(forever.json().token), 'a token minted without expiration has no exp')
})

t.test('access tokens and tickets without exp are refused', async t => {
  const app = await buildApp(t, { env })
  const user = await createUser(app)
  const base = await listen(app)
  const now = Math.floor(Date.now() / 1000)
  const access = createSigner({ key: TEST_SECRET, algorithm: 'HS256', iss: ISSUER, aud: TOKEN_KINDS.access })({ sub: user.id, sid: 's', iat: now })
  const ticket = createSigner({ key: TEST_SECRET, algorithm: 'HS256', iss: ISSUER, aud: TOKEN_KINDS.ws, jti: randomUUID() })({ sub: user.id, iat: now })

  const res = await app.inject({ method: 'GET', url: '/websocket-token/', headers: { authorization: `Bearer ${access}` } })
  t.equal(res.statusCode, 401, 'access token without exp')
  t.equal((await refused(wsUrl(base), { headers: { authorization: `Bearer ${access}` } })).statusCode, 401, 'access token without exp on /ws')
  t.equal((await refused(wsUrl(base, ticket))).statusCode, 401, 'ticket without exp')
})
