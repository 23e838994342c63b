import t from 'tap'
import { Writable } from 'node:stream'
import { loggerOptions, redactUrl } from '../../lib/logger.js'
import { buildApp, createUser } from '../helpers/app.js'

t.test('a ticket is never logged, however the query spells `token`', async t => {
  const lines: string[] = []
  const stream = new Writable({ write (chunk, _encoding, callback) { lines.push(chunk.toString()); callback() } })
  const app = await buildApp(t, { env: { LOG_LEVEL: 'trace' }, server: { logger: { ...(loggerOptions('trace') as object), stream } } })
  const user = await createUser(app)
  const tickets = Array.from({ length: 5 }, () => app.tokens.issueWsTicket(user.id).token)
  await app.inject(`/ws?tok%65n=${tickets[0]}`)
  await app.inject(`/ws?%74oken=${tickets[1]}&x=1`)
  await app.inject(`/nope?ACCESS_TOKEN=${tickets[2]}`)
  await app.inject(`/nope?tic+ket=1&ticket=${tickets[3]}`)
  await app.inject(`/nope?%E0%A4%A=${tickets[4]}`)

  const log = lines.join('')
  t.ok(log.includes('request completed'), 'requests were logged')
  for (const ticket of tickets) t.notOk(log.includes(ticket.split('.')[2]), 'no ticket signature in the logs')
  t.equal(redactUrl('/ws?a=1&tok%65n=abc&b=2'), '/ws?a=1&tok%65n=[REDACTED]&b=2', 'other parameters stay readable')
  t.equal(redactUrl('/health'), '/health')
})

const DOCUMENT_ONLY = ['cross-origin-opener-policy', 'origin-agent-cluster', 'x-dns-prefetch-control', 'x-download-options', 'x-permitted-cross-domain-policies', 'x-xss-protection']

t.test('security headers on every response', async t => {
  const app = await buildApp(t)
  for (const url of ['/health', '/nope', '/websocket-token/']) {
    const res = await app.inject(url)
    t.equal(res.headers['x-content-type-options'], 'nosniff', url)
    t.equal(res.headers['x-frame-options'], 'DENY', url)
    t.equal(res.headers['referrer-policy'], 'no-referrer', url)
    t.match(res.headers['content-security-policy'], /frame-ancestors 'none'/, url)
    t.equal(res.headers['strict-transport-security'], undefined, 'no HSTS unless configured')
    t.equal(res.headers['cross-origin-resource-policy'], 'same-origin', url)
    for (const name of DOCUMENT_ONLY) t.equal(res.headers[name], undefined, `${url}: no ${name} on a JSON answer`)
  }
  // The HTML pages get helmet's document headers too, and keep their own policy.
  const pages = await buildApp(t, { env: { DEMO: 'true' } })
  for (const url of ['/docs/', '/demo/']) {
    const res = await pages.inject(url)
    t.equal(res.statusCode, 200, url)
    t.match(res.headers['content-type'], /text\/html/, url)
    t.equal(res.headers['cross-origin-opener-policy'], 'same-origin', url)
    t.equal(res.headers['x-permitted-cross-domain-policies'], 'none', url)
    t.equal(res.headers['x-frame-options'], 'DENY', url)
    t.match(res.headers['content-security-policy'], /script-src 'self'/, `${url} keeps its own policy`)
  }
  const hsts = await buildApp(t, { env: { HSTS_MAX_AGE: '31536000' } })
  t.equal((await hsts.inject('/health')).headers['strict-transport-security'], 'max-age=31536000; includeSubDomains')
})

t.test('metrics: on, off, or behind a bearer token', async t => {
  const off = await buildApp(t, { env: { METRICS: 'off' } })
  t.equal((await off.inject('/metrics')).statusCode, 404)

  const secret = 'metrics-secret-0123456789'
  const guarded = await buildApp(t, { env: { METRICS_TOKEN: secret } })
  const anonymous = await guarded.inject('/metrics')
  t.equal(anonymous.statusCode, 401)
  t.match(anonymous.json(), { success: false, statusCode: 401, code: 'UNAUTHORIZED' })
  t.equal((await guarded.inject({ url: '/metrics', headers: { authorization: 'Bearer wrong' } })).statusCode, 401)
  const scraped = await guarded.inject({ url: '/metrics', headers: { authorization: `Bearer ${secret}` } })
  t.equal(scraped.statusCode, 200)
  t.match(scraped.body, /gatehouse_process_cpu_user_seconds_total/)
})

t.test('docs can be switched off', async t => {
  const app = await buildApp(t, { env: { DOCS: 'off' } })
  t.equal((await app.inject('/docs/json')).statusCode, 404)
  t.equal((await app.inject('/docs')).statusCode, 404)
  t.ok(app.swagger().paths?.['/api/messages/send-bulk'], 'the document is still built')
})
