import t from 'tap'
import { connect } from 'node:net'
import Fastify from 'fastify'
import app from '../../app.js'
import { serverOptions } from '../../lib/server-options.js'
import { buildApp, freshPglite, testConfig } from '../helpers/app.js'
import { listen } from '../ws/helpers.js'

const envelope = (statusCode: number, code: string) => ({ success: false, statusCode, code, error: String, message: String })

/** Sends raw bytes on a new connection and resolves with everything the server wrote before closing it. */
function raw (base: string, request: string): Promise<string> {
  const { port } = new URL(base)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1')
    let answer = ''
    socket.on('data', chunk => { answer += chunk.toString() })
    socket.on('error', reject)
    socket.on('close', () => resolve(answer))
    socket.write(request)
  })
}

const bodyOf = (answer: string) => JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))

t.test('router errors answer in the envelope', async t => {
  const app = await buildApp(t)
  const badUrl = await app.inject('/api/templates/%E0%A4%A')
  t.equal(badUrl.statusCode, 400)
  t.match(badUrl.json(), envelope(400, 'BAD_URL'))

  const longParam = await app.inject(`/api/templates/${'a'.repeat(500)}`)
  t.equal(longParam.statusCode, 414)
  t.match(longParam.json(), envelope(414, 'URI_TOO_LONG'))
})

t.test('oversized headers and malformed HTTP answer in the envelope', async t => {
  const server = await buildApp(t)
  const base = await listen(server)

  const big = await raw(base, `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`)
  t.match(big, /^HTTP\/1\.1 431 /)
  t.match(bodyOf(big), envelope(431, 'HEADERS_TOO_LARGE'))

  const garbage = await raw(base, 'NOT HTTP AT ALL\r\n\r\n')
  t.match(garbage, /^HTTP\/1\.1 400 /)
  t.match(bodyOf(garbage), envelope(400, 'BAD_REQUEST'))
})

t.test('/metrics and /docs are rate limited in the envelope', async t => {
  const app = await buildApp(t, { env: { RATE_LIMIT_MAX: '1' } })
  for (const url of ['/metrics', '/docs/json']) {
    await app.inject(url)
    const limited = await app.inject(url)
    t.equal(limited.statusCode, 429, url)
    t.match(limited.json(), envelope(429, 'RATE_LIMITED'), url)
    t.ok(limited.headers['retry-after'], 'says when to retry')
  }
})

t.test('requests arriving while the server closes get a 503 in the envelope', async t => {
  const config = testConfig()
  const server = Fastify(serverOptions(config))
  await server.register(app, { config, driver: await freshPglite() })
  // Holds the shutdown open, as sockets and in-flight requests would.
  let release = () => {}
  const held = new Promise<void>(resolve => { release = resolve })
  let closingStarted = () => {}
  const started = new Promise<void>(resolve => { closingStarted = resolve })
  await server.register(async child => {
    child.addHook('preClose', async () => { closingStarted(); await held })
  })
  const base = await listen(server)
  const closed = server.close()
  await started

  const answer = await raw(base, 'GET /websocket-token/ HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n')
  t.match(answer, /^HTTP\/1\.1 503 /)
  t.match(answer, /connection: close/i)
  t.match(bodyOf(answer), envelope(503, 'SERVER_CLOSING'))
  release()
  await closed
})
