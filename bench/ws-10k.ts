/**
 * 10,000 sockets on one gatehouse process: memory while they are connected, and
 * one send-bulk to all of them until every client has its message. The clients
 * run in a child process, so the server's figures are its own (and each process
 * stays under the open-file limit).
 *
 *   npm run bench:ws-10k -- [--clients 10000] [--runs 5]
 *   DATABASE_URL=postgres://… npm run bench:ws-10k
 *
 * Reference in the same run: the same server's memory before any socket.
 */
import { fork } from 'node:child_process'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'
import Fastify from 'fastify'
import app from '../app.js'
import { loadConfig } from '../lib/config.js'
import { serverOptions } from '../lib/server-options.js'
import { createPgliteDriver } from '../plugins/app/supabase/drivers/pglite.js'
import { createPostgresDriver } from '../plugins/app/supabase/drivers/postgres.js'
import { migrate } from '../plugins/app/supabase/migrate.js'

const { values } = parseArgs({
  options: { clients: { type: 'string', default: '10000' }, runs: { type: 'string', default: '5' }, child: { type: 'boolean', default: false } }
})
const CLIENTS = Number(values.clients)
const RUNS = Number(values.runs)

type ToChild = { type: 'connect', url: string, tickets: string[] } | { type: 'expect', count: number }
// `at`: when the frame arrived, on the clock both processes share (the server is too busy to note it itself).
type ToParent = { type: 'connected' } | { type: 'first', at: number } | { type: 'received', at: number } | { type: 'error', message: string }

const now = () => performance.timeOrigin + performance.now()

/** The client side: opens every socket, acks what it receives, reports when a round is complete. */
function child () {
  const send = (message: ToParent) => process.send?.(message)
  let received = 0
  let expected = Infinity
  process.on('message', async (message: ToChild) => {
    if (message.type === 'expect') {
      expected = message.count
      received = 0
      return
    }
    const { url, tickets } = message
    for (let i = 0; i < tickets.length; i += 200) {
      await Promise.all(tickets.slice(i, i + 200).map(ticket => new Promise<void>((resolve, reject) => {
        const ws = new WebSocket(`${url}?token=${ticket}`, { perMessageDeflate: false })
        ws.on('error', reject)
        ws.on('message', raw => {
          const frame = JSON.parse(raw.toString()) as { type: string, id?: string }
          if (frame.type === 'ready') return resolve()
          if (frame.type !== 'message') return
          ws.send(JSON.stringify({ type: 'ack', ids: [frame.id] }))
          if (++received === 1) send({ type: 'first', at: now() })
          if (received === expected) send({ type: 'received', at: now() })
        })
      }))).catch(error => send({ type: 'error', message: String(error) }))
    }
    send({ type: 'connected' })
  })
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const mib = (bytes: number) => `${Math.round(bytes / 1048576)} MiB`
const memory = () => {
  (globalThis as { gc?: () => void }).gc?.()
  return process.memoryUsage()
}

async function parent () {
  const postgresUrl = process.env.DATABASE_URL
  const driver = postgresUrl ? createPostgresDriver(postgresUrl, { timeoutMs: 30_000 }) : await createPgliteDriver(null)
  await migrate(driver.sql!)
  // On Postgres the users of a previous run are replaced, with their messages.
  await driver.sql!.query("delete from users where organization_id = 'bench'")
  await driver.sql!.query("insert into users (id, organization_id) select 'u' || g, 'bench' from generate_series(1, $1::int) g", [CLIENTS])
  await driver.sql!.query("insert into users (id, organization_id) values ('sender', 'bench')")

  const config = loadConfig({ LOG_LEVEL: 'warn', JWT_SECRET: 'bench-secret-bench-secret-bench-secret', RATE_LIMIT_MAX: '100000000', WS_CONNECT_RATE_MAX: '100000000', WS_TOKEN_TTL: '600' })
  const server = Fastify(serverOptions(config, { logger: false }))
  await server.register(app, { config, driver })
  await server.listen({ port: 0, host: '127.0.0.1' })
  const base = `127.0.0.1:${(server.server.address() as { port: number }).port}`
  const sender = await server.store.getUser('sender')
  const apiTokenId = crypto.randomUUID()
  await server.store.createApiToken({ id: apiTokenId, userId: 'sender', createdBy: null, name: 'bench', expiresAt: null })
  const apiToken = server.tokens.issueApi(apiTokenId, sender!.id, null)
  const recipientIds = Array.from({ length: CLIENTS }, (_, i) => `u${i + 1}`)

  const before = memory()
  const clients = fork(fileURLToPath(import.meta.url), ['--child'], { stdio: 'inherit' })
  const next = (type: ToParent['type']) => new Promise<ToParent>((resolve, reject) => {
    const onMessage = (message: ToParent) => {
      if (message.type === 'error') reject(new Error(message.message))
      if (message.type !== type) return
      clients.off('message', onMessage)
      resolve(message)
    }
    clients.on('message', onMessage)
  })

  const connectStart = performance.now()
  const connected = next('connected')
  clients.send({ type: 'connect', url: `ws://${base}/ws`, tickets: recipientIds.map(id => server.tokens.issueWsTicket(id).token) } satisfies ToChild)
  await connected
  const connectMs = performance.now() - connectStart
  const after = memory()
  let peakRss = after.rss

  const times: number[] = []
  const firsts: number[] = []
  for (let run = 0; run < RUNS; run++) {
    clients.send({ type: 'expect', count: CLIENTS } satisfies ToChild)
    const first = next('first')
    const received = next('received')
    const start = now()
    const res = await fetch(`http://${base}/api/messages/send-bulk`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ recipientIds, content: `run ${run}: ${'x'.repeat(200)}` })
    })
    if (res.status !== 200) throw new Error(`send-bulk answered ${res.status}`)
    firsts.push((await first as { at: number }).at - start)
    times.push((await received as { at: number }).at - start)
    peakRss = Math.max(peakRss, process.memoryUsage().rss)
  }

  console.log(`${CLIENTS} sockets on one process, ${postgresUrl ? 'Postgres' : 'embedded store'}, node ${process.version}`)
  console.log(`  connecting all (ticket, replay check, ready): ${Math.round(connectMs)} ms`)
  console.log(`  server heap: ${mib(before.heapUsed)} before, ${mib(after.heapUsed)} with every socket open, ` +
    `${((after.heapUsed - before.heapUsed) / CLIENTS / 1024).toFixed(1)} KiB per socket`)
  console.log(`  server RSS: ${mib(before.rss)} before, ${mib(after.rss)} connected, peak ${mib(peakRss)} while sending`)
  console.log(`  send-bulk to all ${CLIENTS} until every socket has it: median ${Math.round(median(times))} ms ` +
    `(runs: ${times.map(Math.round).join(', ')})`)
  console.log(`  send-bulk to all ${CLIENTS} until the first socket has it: median ${Math.round(median(firsts))} ms ` +
    `(runs: ${firsts.map(Math.round).join(', ')})`)
  clients.kill()
  await server.close()
}

if (values.child) child()
else await parent()
