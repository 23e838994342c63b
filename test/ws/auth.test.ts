import t from 'tap'
import { randomUUID } from 'node:crypto'
import { createSigner } from 'fast-jwt'
import { loggerOptions } from '../../lib/logger.js'
import { ISSUER, TOKEN_KINDS } from '../../plugins/external/jwt.js'
import { accessTokenFor, apiTokenFor, buildApp, createUser, TEST_SECRET } from '../helpers/app.js'
import { listen, Peer, refused, ticketFor, wsUrl } from './helpers.js'

const envelope401 = { success: false, statusCode: 401, code: 'UNAUTHORIZED', error: String, message: String }

t.test('a ws ticket opens a socket that starts with ready', async t => {
  const app = await buildApp(t)
  const base = await listen(app)
  const user = await createUser(app)
  const peer = await Peer.open(t, wsUrl(base, ticketFor(app, user)))
  t.same(await peer.next(), { type: 'ready', userId: user.id })
})

t.test('the upgrade is refused with 401 and no socket', async t => {
  const app = await buildApp(t)
  const base = await listen(app)
  const user = await createUser(app)

  t.test('without any credential', async t => {
    const res = await refused(wsUrl(base))
    t.equal(res.statusCode, 401)
    t.match(res.body, envelope401)
  })

  t.test('with a ticket used a second time', async t => {
    const ticket = ticketFor(app, user)
    await Peer.ready(t, wsUrl(base, ticket))
    const res = await refused(wsUrl(base, ticket))
    t.equal(res.statusCode, 401)
    t.match(res.body, { ...envelope401, message: 'Token already used' })
  })

  t.test('with an access token in the query string', async t => {
    const res = await refused(wsUrl(base, accessTokenFor(app, user)))
    t.equal(res.statusCode, 401)
    t.match(res.body, envelope401)
  })

  t.test('with an api token, in the query string or the Authorization header', async t => {
    const { token } = await apiTokenFor(app, user)
    t.equal((await refused(wsUrl(base, token))).statusCode, 401)
    t.equal((await refused(wsUrl(base), { headers: { authorization: `Bearer ${token}` } })).statusCode, 401)
  })

  t.test('with an expired ticket', async t => {
    const sign = createSigner({ key: TEST_SECRET, algorithm: 'HS256', iss: ISSUER, aud: TOKEN_KINDS.ws, jti: randomUUID() })
    const now = Math.floor(Date.now() / 1000)
    const res = await refused(wsUrl(base, sign({ sub: user.id, iat: now - 120, exp: now - 60 })))
    t.equal(res.statusCode, 401)
    t.match(res.body, envelope401)
  })

  t.test('with a ticket signed by someone else', async t => {
    const sign = createSigner({ key: 'another-secret-another-secret-another-secret', algorithm: 'HS256', iss: ISSUER, aud: TOKEN_KINDS.ws, jti: randomUUID(), expiresIn: 60_000 })
    t.equal((await refused(wsUrl(base, sign({ sub: user.id })))).statusCode, 401)
  })

  t.test('with a garbled token or a repeated token parameter', async t => {
    t.equal((await refused(wsUrl(base, 'not-a-token'))).statusCode, 401)
    t.equal((await refused(wsUrl(base, ''))).statusCode, 401)
    const ticket = ticketFor(app, user)
    t.equal((await refused(`${wsUrl(base, ticket)}&token=${ticket}`)).statusCode, 401)
    t.equal((await refused(wsUrl(base), { headers: { authorization: 'Basic abc' } })).statusCode, 401)
  })

  t.test('for a user who no longer exists', async t => {
    const gone = await createUser(app)
    const ticket = ticketFor(app, gone)
    await app.store.deleteUser({ id: gone.id })
    t.equal((await refused(wsUrl(base, ticket))).statusCode, 401)
  })
})

t.test('a plain HTTP request gets 426 and leaves the ticket unused', async t => {
  const app = await buildApp(t)
  const base = await listen(app)
  const user = await createUser(app)
  const ticket = ticketFor(app, user)
  const res = await app.inject({ method: 'GET', url: `/ws?token=${ticket}` })
  t.equal(res.statusCode, 426)
  t.match(res.json(), { success: false, statusCode: 426, code: 'UPGRADE_REQUIRED' })
  await Peer.ready(t, wsUrl(base, ticket))
})

t.test('a non-browser client may send an access token in Authorization', async t => {
  const app = await buildApp(t)
  const base = await listen(app)
  const user = await createUser(app)
  const peer = await Peer.open(t, wsUrl(base), { headers: { authorization: `Bearer ${accessTokenFor(app, user)}` } })
  t.same(await peer.next(), { type: 'ready', userId: user.id })
})

t.test('the access_token cookie is accepted only from an allowed Origin', async t => {
  const app = await buildApp(t, { env: { CORS_ORIGINS: 'https://app.example.com' } })
  const base = await listen(app)
  const user = await createUser(app)
  const cookie = `access_token=${accessTokenFor(app, user)}`

  const peer = await Peer.open(t, wsUrl(base), { headers: { cookie, origin: 'https://app.example.com' } })
  t.same(await peer.next(), { type: 'ready', userId: user.id })

  const foreign = await refused(wsUrl(base), { headers: { cookie, origin: 'https://evil.example.net' } })
  t.equal(foreign.statusCode, 403)
  t.match(foreign.body, { success: false, statusCode: 403, code: 'ORIGIN_NOT_ALLOWED' })
  t.equal((await refused(wsUrl(base), { headers: { cookie } })).statusCode, 403, 'no Origin at all')
  t.equal((await refused(wsUrl(base), { headers: { cookie: 'access_token=garbage', origin: 'https://app.example.com' } })).statusCode, 401)
})

t.test('tokens never reach the logs', async t => {
  const lines: string[] = []
  const app = await buildApp(t, {
    server: { logger: { ...(loggerOptions('trace') as object), stream: { write: (line: string) => { lines.push(line) } } } }
  })
  const base = await listen(app)
  const user = await createUser(app)
  const ticket = ticketFor(app, user)
  const access = accessTokenFor(app, user)

  await Peer.ready(t, wsUrl(base, ticket))
  await refused(wsUrl(base, ticket))
  await refused(wsUrl(base, access))
  const peer = await Peer.ready(t, wsUrl(base), { headers: { authorization: `Bearer ${access}` } })
  peer.ws.close()
  await peer.closed

  const log = lines.join('')
  t.match(log, /\/ws\?token=\[REDACTED\]/, 'requests to /ws are logged')
  for (const token of [ticket, access]) {
    for (const part of token.split('.')) t.notOk(log.includes(part), 'no part of a token is logged')
  }
})
