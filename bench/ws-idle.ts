/**
 * Memory per idle WebSocket: N sockets open and silent on one server process,
 * its RSS and heap (after a full GC) before and once all are connected, divided
 * by N. The reference, in the same run: a bare `ws` server holding as many.
 * Each server runs in a process of its own, its clients in another, rounds
 * interleaved; medians. The open-file limit caps N (one descriptor per socket).
 *
 *   npm run bench:ws-idle -- [--clients 19000] [--rounds 3]
 *   DATABASE_URL=postgres://… npm run bench:ws-idle     (gatehouse on Postgres; the default is the embedded store,
 *   in its own process as `npm start` runs it, whose memory is not the server's)
 */
import { fork } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import WebSocket, { WebSocketServer } from 'ws'
import Fastify from 'fastify'
import app from '../app.js'
import { loadConfig } from '../lib/config.js'
import { serverOptions } from '../lib/server-options.js'
import type { RpcDriver, SqlAccess } from '../plugins/app/supabase/driver.js'
import { createEmbeddedDriver } from '../plugins/app/supabase/drivers/embedded.js'
import { createPostgresDriver } from '../plugins/app/supabase/drivers/postgres.js'
import { migrate } from '../plugins/app/supabase/migrate.js'

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '19000' },
    rounds: { type: 'string', default: '3' },
    role: { type: 'string', default: 'main' }
  }
})
const CLIENTS = Number(values.clients)
const self = fileURLToPath(import.meta.url)

interface Result { rssPerSocket: number, heapPerSocket: number }
type Subject = 'bare' | 'gatehouse'

const gcMemory = async () => {
  await new Promise(resolve => setTimeout(resolve, 1000))
  ;(globalThis as { gc?: () => void }).gc?.()
  return process.memoryUsage()
}

/** The client side: opens every URL it is sent, 200 at a time, and keeps them open and silent. */
function clients () {
  const open: WebSocket[] = []
  process.on('message', async (urls: string[]) => {
    for (let i = 0; i < urls.length; i += 200) {
      await Promise.all(urls.slice(i, i + 200).map(url => new Promise<void>((resolve, reject) => {
        const ws = new WebSocket(url, { perMessageDeflate: false })
        open.push(ws)
        ws.once('error', reject)
        // Gatehouse says `ready` once the socket is registered; a bare server says nothing.
        if (url.includes('token=')) ws.once('message', () => resolve())
        else ws.once('open', () => resolve())
      })))
    }
    process.send?.('connected')
  })
}

/** A server process: starts the subject, has a client process open N sockets, reports its memory. */
async function server (subject: Subject): Promise<void> {
  let urls: string[]
  let close: () => Promise<void>
  if (subject === 'bare') {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false })
    await new Promise(resolve => wss.once('listening', resolve))
    wss.on('connection', ws => ws.on('error', () => {}))
    const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`
    urls = Array.from({ length: CLIENTS }, () => url)
    close = async () => { await new Promise(resolve => wss.close(resolve)) }
  } else {
    const databaseUrl = process.env.DATABASE_URL
    // The embedded store as `npm start` runs it: PGlite in a process of its own, migrated on start.
    const driver: RpcDriver & { sql?: SqlAccess } = databaseUrl ? createPostgresDriver(databaseUrl, { timeoutMs: 30_000 }) : await createEmbeddedDriver({ dataDir: null, timeoutMs: 30_000 })
    if (databaseUrl) await migrate(driver.sql!)
    const org = `bench_${randomUUID().slice(0, 8)}`
    await driver.sql!.query("insert into users (id, organization_id) select $1 || '_' || g, $1 from generate_series(1, $2::int) g", [org, CLIENTS])
    const config = loadConfig({ LOG_LEVEL: 'warn', JWT_SECRET: 'bench-secret-bench-secret-bench-secret', RATE_LIMIT_MAX: '100000000', WS_CONNECT_RATE_MAX: '100000000', WS_TOKEN_TTL: '600', METRICS: 'off' })
    const fastify = Fastify(serverOptions(config, { logger: false }))
    await fastify.register(app, { config, driver })
    await fastify.listen({ port: 0, host: '127.0.0.1' })
    const base = `ws://127.0.0.1:${(fastify.server.address() as AddressInfo).port}/ws`
    urls = Array.from({ length: CLIENTS }, (_, i) => `${base}?token=${fastify.tokens.issueWsTicket(`${org}_${i + 1}`).token}`)
    close = async () => {
      await fastify.close()
      if (databaseUrl) {
        const cleanup = createPostgresDriver(databaseUrl, { timeoutMs: 30_000 })
        await cleanup.sql.query('delete from users where organization_id = $1', [org])
        await cleanup.close()
      }
    }
  }
  const before = await gcMemory()
  const peer = fork(self, ['--role', 'clients'], { stdio: 'inherit' })
  await new Promise<void>((resolve, reject) => {
    peer.once('message', () => resolve())
    peer.once('exit', code => reject(new Error(`clients exited (${code})`)))
    peer.send(urls)
  })
  const after = await gcMemory()
  process.send?.({ rssPerSocket: (after.rss - before.rss) / CLIENTS, heapPerSocket: (after.heapUsed - before.heapUsed) / CLIENTS } satisfies Result)
  peer.kill()
  await close()
}

async function main () {
  const results: Record<Subject, Result[]> = { bare: [], gatehouse: [] }
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const subject of ['bare', 'gatehouse'] as const) {
      const child = fork(self, ['--role', subject], { execArgv: [...process.execArgv, '--expose-gc'], stdio: 'inherit' })
      results[subject].push(await new Promise<Result>((resolve, reject) => {
        child.once('message', (result: Result) => resolve(result))
        child.once('exit', code => reject(new Error(`${subject} exited (${code})`)))
      }))
      await new Promise(resolve => child.once('exit', resolve))
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`
  console.log(`${CLIENTS} idle sockets per server process, node ${process.version}, median of ${values.rounds} rounds; ` +
    `gatehouse store: ${process.env.DATABASE_URL ? 'Postgres' : 'embedded (its own process)'}`)
  for (const subject of ['bare', 'gatehouse'] as const) {
    const rs = results[subject]
    console.log(`  ${(subject === 'bare' ? 'bare ws server' : 'gatehouse').padEnd(16)} RSS ${kib(median(rs.map(r => r.rssPerSocket)))} per socket ` +
      `(rounds: ${rs.map(r => kib(r.rssPerSocket)).join(', ')}), heap ${kib(median(rs.map(r => r.heapPerSocket)))}`)
  }
}

if (values.role === 'clients') clients()
else if (values.role === 'main') await main()
else {
  await server(values.role as Subject)
  process.exit(0)
}
