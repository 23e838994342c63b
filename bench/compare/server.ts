/**
 * One benchmark server in a process of its own, driven by its parent over IPC:
 * gatehouse (the whole app, embedded store in its own process as in production,
 * or Postgres with DATABASE_URL), or a reference that does what gatehouse does
 * minus authentication and storage:
 *
 *   ws        a bare `ws` server: a socket per `?user=`, and `POST /send-bulk`
 *             sends each recipient's socket one frame
 *   socketio  a socket.io server: each socket joins a room named after its
 *             user (`auth: { user }`), and `POST /send-bulk` emits to each room
 *
 * All three take the same body (`{ recipientIds, content }`) and send each
 * recipient a message of the same shape, so the clients do the same work.
 */
import { randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseArgs } from 'node:util'
import { WebSocketServer, type WebSocket } from 'ws'
import { Server as SocketIoServer } from 'socket.io'
import Fastify from 'fastify'
import app from '../../app.js'
import { loadConfig } from '../../lib/config.js'
import { serverOptions } from '../../lib/server-options.js'
import { createDriver } from '../../plugins/app/supabase/index.js'
import type { FromServer, SubjectKind, ToServer } from './protocol.js'

const { values } = parseArgs({
  options: { kind: { type: 'string' }, users: { type: 'string', default: '10000' } }
})
const KIND = values.kind as Exclude<SubjectKind, 'baseline'>
const USERS = Number(values.users)
export const userId = (i: number) => `u${i + 1}`

const reply = (message: FromServer) => process.send?.(message)
const memory = () => {
  const gc = (globalThis as { gc?: () => void }).gc
  gc?.()
  gc?.()
  return process.memoryUsage()
}

interface Running {
  port: number
  /** Headers of the send request; gatehouse needs an API token. */
  sendHeaders: Record<string, string>
  sendPath: string
  credentials (count: number): string[]
  connections (): number
  close (): Promise<void>
}

function readBody (req: IncomingMessage): Promise<{ recipientIds: string[], content: string }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', chunk => chunks.push(chunk))
    req.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString())))
    req.on('error', reject)
  })
}

/** `POST /send-bulk` for the references: parse, then hand every recipient its message. */
function sendBulkServer (deliver: (recipientIds: string[], message: Record<string, unknown>) => void) {
  return createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'POST' || req.url !== '/send-bulk') {
      res.writeHead(404).end()
      return
    }
    readBody(req).then(({ recipientIds, content }) => {
      const createdAt = new Date().toISOString()
      deliver(recipientIds, { id: randomUUID(), senderId: 'bench-sender', content, templateId: null, createdAt })
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"success":true}')
    }, () => res.writeHead(400).end())
  })
}

async function listen (server: ReturnType<typeof createServer>): Promise<number> {
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', 511, resolve))
  return (server.address() as AddressInfo).port
}

const ids = (count: number) => Array.from({ length: count }, (_, i) => userId(i))

async function bareWs (): Promise<Running> {
  const sockets = new Map<string, WebSocket>()
  const http = sendBulkServer((recipientIds, message) => {
    const frame = JSON.stringify({ type: 'message', ...message })
    for (const id of recipientIds) sockets.get(id)?.send(frame)
  })
  const wss = new WebSocketServer({ server: http, perMessageDeflate: false, maxPayload: 64 * 1024 })
  wss.on('connection', (ws, req) => {
    const user = new URL(req.url ?? '/', 'http://x').searchParams.get('user') ?? ''
    sockets.set(user, ws)
    // A peer resetting its connection must not end the benchmark (ws throws on an unheard 'error').
    ws.on('error', () => {})
    ws.on('close', () => { if (sockets.get(user) === ws) sockets.delete(user) })
  })
  const port = await listen(http)
  return {
    port,
    sendPath: '/send-bulk',
    sendHeaders: {},
    credentials: ids,
    connections: () => wss.clients.size,
    close: async () => {
      for (const ws of wss.clients) ws.terminate()
      await new Promise(resolve => wss.close(resolve))
      await new Promise(resolve => http.close(resolve))
    }
  }
}

async function socketIo (): Promise<Running> {
  const http = sendBulkServer((recipientIds, message) => {
    for (const id of recipientIds) io.to(id).emit('message', message)
  })
  // WebSocket only, no long-polling fallback: the same transport as the others.
  const io = new SocketIoServer(http, { transports: ['websocket'], perMessageDeflate: false, serveClient: false })
  io.on('connection', socket => {
    const user = (socket.handshake.auth as { user?: string }).user
    if (user) socket.join(user)
  })
  const port = await listen(http)
  return {
    port,
    sendPath: '/send-bulk',
    sendHeaders: {},
    credentials: ids,
    connections: () => io.engine.clientsCount,
    close: async () => {
      io.disconnectSockets(true)
      await io.close()
    }
  }
}

async function gatehouse (): Promise<Running> {
  const loaded = loadConfig({
    ...process.env.DATABASE_URL ? { DATABASE_URL: process.env.DATABASE_URL } : {},
    LOG_LEVEL: 'warn',
    JWT_SECRET: 'bench-secret-bench-secret-bench-secret',
    // One client address opens every socket: the per-address limits would refuse most of them.
    RATE_LIMIT_MAX: '100000000',
    WS_CONNECT_RATE_MAX: '100000000',
    MAX_RECIPIENTS: String(Math.max(USERS, 10_000)),
    WS_TOKEN_TTL: '3600',
    // A 10,000-recipient send on a loaded machine may take longer than the default 5 s: measured, not refused.
    STORE_TIMEOUT_MS: '60000'
  })
  // The embedded store in memory (still in a process of its own): every run starts empty.
  const config = { ...loaded, store: loaded.store.kind === 'pglite' ? { ...loaded.store, dataDir: null } : loaded.store }
  const driver = await createDriver(config.store, config.STORE_TIMEOUT_MS)
  const server = Fastify(serverOptions(config, { logger: false, pluginTimeout: 120_000 }))
  await server.register(app, { config, driver })
  // A run of its own on Postgres: this run's users only, removed at the end.
  const org = `bench_${randomUUID().slice(0, 8)}`
  const sql = driver.sql
  if (!sql) throw new Error('the benchmark seeds users through SQL: embedded store or DATABASE_URL')
  if (config.store.kind === 'postgres') await sql.query("delete from users where id ~ '^u[0-9]+$' or id = 'bench-sender'")
  await sql.query("insert into users (id, organization_id) select 'u' || g, $2 from generate_series(1, $1::int) g", [USERS, org])
  await sql.query("insert into users (id, organization_id) values ('bench-sender', $1)", [org])
  const apiTokenId = randomUUID()
  await server.store.createApiToken({ id: apiTokenId, userId: 'bench-sender', createdBy: null, name: 'bench', expiresAt: null })
  const apiToken = server.tokens.issueApi(apiTokenId, 'bench-sender', null)
  await server.listen({ port: 0, host: '127.0.0.1' })
  return {
    port: (server.server.address() as AddressInfo).port,
    sendPath: '/api/messages/send-bulk',
    sendHeaders: { authorization: `Bearer ${apiToken}` },
    // Single-use tickets, as browsers open sockets; minted here so their signing is not timed.
    credentials: count => ids(count).map(id => server.tokens.issueWsTicket(id).token),
    connections: () => server.hub.connections,
    close: async () => {
      if (config.store.kind === 'postgres') await sql.query('delete from users where organization_id = $1', [org])
      await server.close()
    }
  }
}

const running = await ({ gatehouse, ws: bareWs, socketio: socketIo })[KIND]()
const fresh = memory()
reply({ type: 'listening', port: running.port, sendPath: running.sendPath, sendHeaders: running.sendHeaders, rss: fresh.rss, heapUsed: fresh.heapUsed })

// Orphaned (the benchmark ended or crashed): go too.
process.on('disconnect', () => { running.close().finally(() => process.exit(0)) })
process.on('message', async (message: ToServer) => {
  if (message.type === 'credentials') {
    reply({ type: 'credentials', credentials: running.credentials(message.count) })
  } else if (message.type === 'memory') {
    const { rss, heapUsed } = memory()
    reply({ type: 'memory', rss, heapUsed, connections: running.connections() })
  } else if (message.type === 'close') {
    await running.close()
    reply({ type: 'closed' })
    process.exit(0)
  }
})
