import t from 'tap'
import { Writable } from 'node:stream'
import { accessTokenFor, buildApp, createUser, freshPglite } from './helpers/app.js'
import { loggerOptions } from '../lib/logger.js'

t.test('unknown routes answer 404 in the error envelope', async t => {
  const app = await buildApp(t)
  const res = await app.inject({ method: 'GET', url: '/nope' })
  t.equal(res.statusCode, 404)
  t.match(res.json(), { success: false, statusCode: 404, status: 404, code: 'NOT_FOUND', error: 'Route GET:/nope not found', message: 'Route GET:/nope not found' })
})

t.test("Fastify's own errors use the envelope too", async t => {
  const app = await buildApp(t, { env: { BODY_LIMIT: '2048' } })
  const admin = await createUser(app, { role: 'admin' })
  const headers = { authorization: `Bearer ${accessTokenFor(app, admin)}` }

  const tooLarge = await app.inject({ method: 'POST', url: '/api/admin/tokens', headers, payload: { userId: 'x', name: 'n'.repeat(4096) } })
  t.equal(tooLarge.statusCode, 413)
  t.match(tooLarge.json(), { success: false, statusCode: 413, code: 'PAYLOAD_TOO_LARGE', error: String, message: String })

  const badJson = await app.inject({ method: 'POST', url: '/api/admin/tokens', headers: { ...headers, 'content-type': 'application/json' }, payload: '{nope' })
  t.equal(badJson.statusCode, 400)
  t.match(badJson.json(), { success: false, statusCode: 400, code: 'INVALID_JSON' })

  const emptyJson = await app.inject({ method: 'POST', url: '/api/admin/tokens', headers: { ...headers, 'content-type': 'application/json' }, payload: '' })
  t.equal(emptyJson.statusCode, 400)
  t.match(emptyJson.json(), { success: false, code: 'INVALID_JSON' })

  const media = await app.inject({ method: 'POST', url: '/api/admin/tokens', headers: { ...headers, 'content-type': 'text/xml' }, payload: '<a/>' })
  t.equal(media.statusCode, 415)
  t.match(media.json(), { success: false, statusCode: 415, code: 'UNSUPPORTED_MEDIA_TYPE' })

  const invalid = await app.inject({ method: 'POST', url: '/api/admin/tokens', headers, payload: { userId: { id: 1 } } })
  t.equal(invalid.statusCode, 400)
  t.match(invalid.json(), { success: false, statusCode: 400, status: 400, code: 'VALIDATION_ERROR', message: /userId/ })
  t.notMatch(invalid.body, /at .*\.ts:\d+/, 'no stack trace')
})

t.test('health, readiness and draining', async t => {
  const app = await buildApp(t)
  t.same((await app.inject('/health')).json(), { status: 'ok' })
  t.same((await app.inject('/ready')).json(), { status: 'ready', checks: { store: 'ok' } })
})

t.test('readiness fails with 503 when the store is down', async t => {
  const driver = await freshPglite()
  const app = await buildApp(t, { driver })
  await driver.close()
  const res = await app.inject('/ready')
  t.equal(res.statusCode, 503)
  t.match(res.json(), { success: false, statusCode: 503, code: 'SERVICE_UNAVAILABLE' })
  t.equal((await app.inject('/health')).statusCode, 200, 'still alive')
})

t.test('OpenAPI document describes the routes, at /docs/json, with a UI at /docs', async t => {
  const app = await buildApp(t)
  const res = await app.inject('/docs/json')
  t.equal(res.statusCode, 200)
  const doc = res.json()
  t.match(doc.openapi, /^3\./)
  for (const path of ['/api/dashboard-token/generate', '/websocket-token', '/api/admin/tokens', '/api/admin/tokens/{tokenId}', '/health', '/ready']) {
    t.ok(doc.paths[path], `${path} is documented`)
  }
  t.ok(doc.paths['/api/admin/tokens'].post.responses['403'], 'error statuses are documented')
  const ui = await app.inject('/docs')
  t.ok(ui.statusCode === 200 || ui.statusCode === 302, 'docs UI is served')
})

t.test('Prometheus metrics', async t => {
  const app = await buildApp(t)
  await app.inject('/health')
  const res = await app.inject('/metrics')
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /text\/plain/)
  t.match(res.body, /gatehouse_http_request_duration_seconds_count\{method="GET",route="\/health",status="200"\} 1/)
  t.match(res.body, /gatehouse_process_cpu_user_seconds_total/)
})

t.test('logs never contain a token: not from Authorization, cookies, nor ?token= in URLs', async t => {
  const lines: string[] = []
  const stream = new Writable({ write (chunk, _encoding, callback) { lines.push(chunk.toString()); callback() } })
  const app = await buildApp(t, {
    env: { LOG_LEVEL: 'trace' },
    server: { logger: { ...(loggerOptions('trace') as object), stream } }
  })
  const user = await createUser(app)
  const access = accessTokenFor(app, user)
  const ticket = app.tokens.issueWsTicket(user.id).token
  await app.inject({ method: 'GET', url: '/websocket-token/', headers: { authorization: `Bearer ${access}` } })
  await app.inject({ method: 'GET', url: '/websocket-token/', cookies: { access_token: access } })
  await app.inject({ method: 'GET', url: `/nope?token=${ticket}&access_token=${access}` })
  await app.inject({ method: 'GET', url: '/websocket-token/', headers: { authorization: 'Bearer garbage.garbage.garbage' } })

  const log = lines.join('')
  t.ok(log.includes('request completed'), 'requests were logged')
  t.ok(log.includes('[REDACTED]'), 'query tokens are replaced')
  for (const [name, secret] of [['access token', access], ['ws ticket', ticket], ['garbled token', 'garbage.garbage.garbage']]) {
    t.notOk(log.includes(secret), `${name} is not in the logs`)
    t.notOk(log.includes(secret.split('.')[2]), `${name} signature is not in the logs`)
  }
})

t.test('probes and metrics are not logged per request at the default level; other requests are', async t => {
  const lines: string[] = []
  const stream = new Writable({ write (chunk, _encoding, callback) { lines.push(chunk.toString()); callback() } })
  const app = await buildApp(t, { server: { logger: { ...(loggerOptions('info') as object), stream } } })
  for (const url of ['/health', '/ready', '/metrics']) t.equal((await app.inject(url)).statusCode, 200, url)
  t.same(lines.filter(line => /"url":"\/(health|ready|metrics)"/.test(line)), [], 'no line for a probe')

  await app.inject({ url: '/nope?x=1', headers: { 'x-request-id': 'probe-1' } })
  const logged = lines.map(line => JSON.parse(line)).filter(entry => entry.reqId === 'probe-1')
  t.equal(logged.length, 1, 'an ordinary request is logged, in one line when it completes')
  t.match(logged[0], {
    level: 30,
    msg: 'request completed',
    req: { method: 'GET', url: '/nope?x=1', requestId: 'probe-1' },
    res: { statusCode: 404 },
    responseTime: Number
  }, 'the one line names the request and its outcome')
})

t.test('CORS lets only the configured origins call with credentials', async t => {
  const app = await buildApp(t, { env: { CORS_ORIGINS: 'https://dashboard.example.com' } })
  const preflight = (origin: string) => app.inject({
    method: 'OPTIONS',
    url: '/websocket-token/',
    headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' }
  })
  const allowed = await preflight('https://dashboard.example.com')
  t.equal(allowed.headers['access-control-allow-origin'], 'https://dashboard.example.com')
  t.equal(allowed.headers['access-control-allow-credentials'], 'true')
  const foreign = await preflight('https://evil.example.com')
  t.equal(foreign.headers['access-control-allow-origin'], undefined)
})

t.test('clients over the rate limit get 429 in the envelope', async t => {
  const app = await buildApp(t, { env: { RATE_LIMIT_MAX: '2' } })
  const statuses = []
  for (let i = 0; i < 3; i++) statuses.push((await app.inject('/websocket-token/')).statusCode)
  t.same(statuses, [401, 401, 429])
  const limited = await app.inject('/websocket-token/')
  t.match(limited.json(), { success: false, statusCode: 429, code: 'RATE_LIMITED', message: /retry in/ })
  t.ok(limited.headers['retry-after'])
  const unknown = await app.inject('/nope')
  t.equal(unknown.statusCode, 429, 'probing unknown routes is limited too')
})
