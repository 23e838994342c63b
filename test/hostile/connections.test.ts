import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import { apiTokenFor, buildApp, createUser, TEST_SECRET } from '../helpers/app.js'
import { buildDist } from '../helpers/processes.js'
import { listen, Peer, refused, ticketFor, wsUrl } from '../ws/helpers.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** A raw connection to the server; `answer` is everything the server wrote, `closed` settles when the server ends it. */
function open (port: number): { socket: Socket, answer: () => string, closed: Promise<void> } {
  const socket = connect(port, '127.0.0.1')
  // The client never ends its side: only the server can close these connections.
  socket.setNoDelay(true)
  let text = ''
  socket.on('data', chunk => { text += chunk.toString() })
  socket.on('error', () => {})
  const closed = new Promise<void>(resolve => socket.on('end', () => resolve()))
  return { socket, answer: () => text, closed }
}

const connections = (app: FastifyInstance) => new Promise<number>((resolve, reject) =>
  app.server.getConnections((err, count) => err ? reject(err) : resolve(count)))

const portOf = (base: string) => Number(new URL(base).port)

t.test('slow and stalled request bodies are cut with a 408 in the envelope', async t => {
  const app = await buildApp(t, { env: { REQUEST_TIMEOUT_MS: '1000' } })
  const base = await listen(app)
  const user = await createUser(app)
  const { token } = await apiTokenFor(app, user)
  const head = `POST /api/messages/send-bulk HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n`

  const clients = []
  for (let i = 0; i < 6; i++) {
    const client = open(portOf(base))
    client.socket.write(head + '{"recipientIds":')
    if (i % 2 === 0) {
      // Trickles a byte now and then, for ever.
      const timer = setInterval(() => client.socket.write(' '), 200)
      client.closed.finally(() => clearInterval(timer))
      t.teardown(() => clearInterval(timer))
    }
    clients.push(client)
  }
  await Promise.all(clients.map(c => c.closed))
  for (const client of clients) {
    t.match(client.answer(), /^HTTP\/1\.1 408 /)
    t.match(JSON.parse(client.answer().slice(client.answer().indexOf('\r\n\r\n') + 4)), { success: false, statusCode: 408, code: 'REQUEST_TIMEOUT' })
    client.socket.destroy()
  }
})

t.test('refused upgrades (401, 429) leave no socket behind', async t => {
  const app = await buildApp(t, { env: { RATE_LIMIT_MAX: '3' } })
  const base = await listen(app)
  const clients = []
  for (let i = 0; i < 8; i++) {
    const client = open(portOf(base))
    client.socket.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
    clients.push(client)
  }
  await Promise.all(clients.map(c => c.closed))
  const statuses = clients.map(c => Number(/^HTTP\/1\.1 (\d+)/.exec(c.answer())?.[1]))
  t.same(statuses.filter(s => s === 401).length, 3, 'the first three are unauthenticated')
  t.same(statuses.filter(s => s === 429).length, 5, 'the rest over the rate limit')
  for (const client of clients) t.match(JSON.parse(client.answer().slice(client.answer().indexOf('\r\n\r\n') + 4)), { success: false })
  t.equal(await connections(app), 0, 'the server closed every refused connection')
  for (const client of clients) client.socket.destroy()
})

t.test('upgrades to a bad URL or an unknown route leave no socket behind either', async t => {
  const app = await buildApp(t)
  const base = await listen(app)
  for (const [path, status] of [['/ws%ZZ', 400], ['/nope', 404], [`/api/templates/${'a'.repeat(200)}`, 414]] as const) {
    const client = open(portOf(base))
    client.socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`)
    await client.closed
    t.match(client.answer(), new RegExp(`^HTTP/1\\.1 ${status} `), path)
    t.match(JSON.parse(client.answer().slice(client.answer().indexOf('\r\n\r\n') + 4)), { success: false, statusCode: status })
    client.socket.destroy()
  }
  t.equal(await connections(app), 0, 'the server closed every refused connection')
})

t.test('one user may hold at most WS_MAX_SOCKETS_PER_USER sockets', async t => {
  const app = await buildApp(t, { env: { WS_MAX_SOCKETS_PER_USER: '3' } })
  const base = await listen(app)
  const user = await createUser(app)
  const other = await createUser(app)
  // A burst: the cap holds even when the upgrades race each other.
  const attempts = await Promise.allSettled(Array.from({ length: 6 }, () => Peer.ready(t, wsUrl(base, ticketFor(app, user)))))
  t.equal(attempts.filter(a => a.status === 'fulfilled').length, 3, 'three sockets opened')
  const res = await refused(wsUrl(base, ticketFor(app, user)))
  t.equal(res.statusCode, 429)
  t.match(res.body, { success: false, statusCode: 429, code: 'TOO_MANY_SOCKETS', details: { maxSocketsPerUser: 3 } })
  await Peer.ready(t, wsUrl(base, ticketFor(app, other)))
  t.pass('other users are not affected')

  const first = attempts.find(a => a.status === 'fulfilled') as PromiseFulfilledResult<Peer>
  first.value.ws.close()
  await first.value.closed
  await Peer.ready(t, wsUrl(base, ticketFor(app, user)))
  t.pass('a closed socket frees its place')
})

t.test('connection attempts on /ws are limited per IP', async t => {
  const app = await buildApp(t, { env: { WS_CONNECT_RATE_MAX: '2' } })
  const base = await listen(app)
  const user = await createUser(app)
  await Peer.ready(t, wsUrl(base, ticketFor(app, user)))
  await Peer.ready(t, wsUrl(base, ticketFor(app, user)))
  const res = await refused(wsUrl(base, ticketFor(app, user)))
  t.equal(res.statusCode, 429)
  t.match(res.body, { success: false, code: 'RATE_LIMITED' })
  t.equal((await app.inject('/health')).statusCode, 200, 'other routes are not affected')
})

t.test('after refused upgrades, SIGTERM still ends the server cleanly', async t => {
  const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-sigterm-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    NODE_ENV: 'production',
    JWT_SECRET: TEST_SECRET,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    DATA_DIR: dataDir,
    RATE_LIMIT_MAX: '2',
    SHUTDOWN_GRACE_MS: '8000'
  }
  const child = spawn(process.execPath, [join(await buildDist(t), 'server.js')], { cwd: ROOT, env })
  t.teardown(() => { child.kill('SIGKILL') })
  let stdout = ''
  child.stdout.on('data', chunk => { stdout += chunk })
  child.stderr.on('data', chunk => { stdout += chunk })
  const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))

  const port = await new Promise<number>((resolve, reject) => {
    const onData = () => {
      const match = /listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(stdout)
      if (match) { child.stdout.off('data', onData); resolve(Number(match[1])) }
    }
    child.stdout.on('data', onData)
    child.once('exit', code => reject(new Error(`the server exited with ${code}: ${stdout}`)))
  })

  const clients = []
  for (let i = 0; i < 6; i++) {
    const client = open(port)
    client.socket.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
    clients.push(client)
  }
  await Promise.all(clients.map(c => c.closed))
  t.ok(clients.some(c => / 429 /.test(c.answer())), 'some upgrades were refused by the rate limit')

  child.kill('SIGTERM')
  t.equal(await exited, 0, 'exit code 0')
  for (const line of stdout.trim().split('\n')) t.doesNotThrow(() => JSON.parse(line), `a JSON log line: ${line.slice(0, 80)}`)
  t.notMatch(stdout, /"level":(50|60)/, 'no error on the way out')
  for (const client of clients) client.socket.destroy()
})
