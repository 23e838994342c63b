import { createHmac, generateKeyPairSync } from 'node:crypto'
import t from 'tap'
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, SignJWT } from 'jose'
import { accessTokenFor, apiTokenFor, buildApp, createUser, freshPglite, TEST_SECRET } from '../helpers/app.js'

const KEK = 'key-encryption-key-for-tests-0123456789abcdef'
const ES256 = { JWT_ALGORITHM: 'ES256', JWT_KEY_ENCRYPTION_KEY: KEK }

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
const claimsOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()) as Record<string, unknown>

/** A service's GET /websocket-token/ with this access token: 200 if the service accepts it. */
async function ticketStatus (app: Awaited<ReturnType<typeof buildApp>>, token: string) {
  return (await app.inject({ method: 'GET', url: '/websocket-token/', headers: { authorization: `Bearer ${token}` } })).statusCode
}

t.test('another service verifies our access tokens with the JWKS document and jose alone', async t => {
  const app = await buildApp(t, { env: ES256 })
  const user = await createUser(app)
  const token = accessTokenFor(app, user)

  const res = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'public, max-age=300')
  const jwks = res.json()
  t.equal(jwks.keys.length, 2, 'the current key and the next one')
  for (const key of jwks.keys) {
    t.match(key, { kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig', kid: String, x: String, y: String })
    t.notOk('d' in key, 'no private part')
  }

  const header = decodeProtectedHeader(token)
  t.equal(header.alg, 'ES256')
  t.ok(jwks.keys.some((k: { kid: string }) => k.kid === header.kid), 'signed with a published key')

  const verifier = createLocalJWKSet(jwks)
  const { payload } = await jwtVerify(token, verifier, { issuer: 'gatehouse', audience: 'gatehouse:access', algorithms: ['ES256'] })
  t.equal(payload.sub, user.id)
  t.equal(payload.exp! - payload.iat!, 86400, 'lifetime in seconds, as before')

  const [h, , s] = token.split('.')
  const tampered = `${h}.${b64({ ...claimsOf(token), sub: 'someone-else' })}.${s}`
  await t.rejects(jwtVerify(tampered, verifier, { issuer: 'gatehouse', audience: 'gatehouse:access' }), 'jose refuses a tampered token')
  t.equal(await ticketStatus(app, tampered), 401, 'and so does the service')
  t.equal(await ticketStatus(app, token), 200, 'the genuine token works here')

  const ticket = (await app.inject({ method: 'GET', url: '/websocket-token/', headers: { authorization: `Bearer ${token}` } })).json().token
  t.equal(decodeProtectedHeader(ticket).alg, 'ES256', 'tickets are signed with the key too')
  await t.rejects(jwtVerify(ticket, verifier, { issuer: 'gatehouse', audience: 'gatehouse:access' }), 'a ticket is no access token')
})

t.test('HS256 stays available: an empty JWKS, and tokens signed with JWT_SECRET', async t => {
  const app = await buildApp(t)
  const res = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  t.same(res.json(), { keys: [] })
  const user = await createUser(app)
  t.equal(decodeProtectedHeader(accessTokenFor(app, user)).alg, 'HS256')
})

t.test('no algorithm confusion between the HS256 and ES256 paths', async t => {
  const driver = await freshPglite()
  const app = await buildApp(t, { env: ES256, driver })
  const user = await createUser(app)
  const genuine = accessTokenFor(app, user)
  const { kid } = decodeProtectedHeader(genuine) as { kid: string }
  const jwk = (await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json().keys.find((k: { kid: string }) => k.kid === kid)
  const claims = claimsOf(genuine)
  const hmac = (header: object, secret: string | Buffer) => {
    const input = `${b64(header)}.${b64(claims)}`
    return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`
  }
  const publicPem = (await import('node:crypto')).createPublicKey({ key: jwk, format: 'jwk' }).export({ format: 'pem', type: 'spki' }) as string

  t.equal(await ticketStatus(app, hmac({ alg: 'HS256', typ: 'JWT', kid }, publicPem)), 401, 'HS256 keyed with the published public key')
  t.equal(await ticketStatus(app, hmac({ alg: 'HS256', typ: 'JWT', kid }, JSON.stringify(jwk))), 401, 'HS256 keyed with the public JWK')
  t.equal(await ticketStatus(app, hmac({ alg: 'HS256', typ: 'JWT', kid }, TEST_SECRET)), 401, 'HS256 with the secret but naming an ES256 kid')
  t.equal(await ticketStatus(app, `${b64({ alg: 'none', kid })}.${b64(claims)}.`), 401, 'alg none')

  const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
  const foreign = (header: { kid?: string }) => new SignJWT(claims).setProtectedHeader({ alg: 'ES256', ...header }).sign(stranger)
  t.equal(await ticketStatus(app, await foreign({ kid })), 401, 'ES256 by another key claiming our kid')
  t.equal(await ticketStatus(app, await foreign({ kid: 'made-up' })), 401, 'an unknown kid')
  t.equal(await ticketStatus(app, await foreign({})), 401, 'ES256 without a kid never reaches the HS256 path')

  // A deployment switching from HS256: tokens issued before keep working until they expire.
  const before = await buildApp(t, { driver: await freshPglite() })
  const legacy = accessTokenFor(before, user)
  t.equal(decodeProtectedHeader(legacy).alg, 'HS256')
  t.equal(await ticketStatus(app, legacy), 200, 'an HS256 token from before the switch')

  // API tokens stay on JWT_SECRET, checked against their record.
  const api = await apiTokenFor(app, user)
  t.equal(decodeProtectedHeader(api.token).alg, 'HS256')
  const sent = await app.inject({ method: 'GET', url: '/api/messages/inbox', headers: { authorization: `Bearer ${api.token}` } })
  t.equal(sent.statusCode, 200)
})

t.test('ES256 without a key-encryption key is a configuration error naming it', async t => {
  await t.rejects(buildApp(t, { env: { JWT_ALGORITHM: 'ES256' } }), /JWT_KEY_ENCRYPTION_KEY: required when JWT_ALGORITHM is ES256/)
})
