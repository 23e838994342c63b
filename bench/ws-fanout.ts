/**
 * Fan-out over WebSocket: N clients connected, one send-bulk to all of them,
 * time until every client has its message. The baseline, in the same run and
 * process, is a bare `ws` server sending a frame of the same size to N clients.
 * A third figure isolates delivery: a batch already stored, handed to the hub.
 *
 *   npm run bench:ws -- [--clients 1000] [--runs 7] [--size 200] [--no-ack]
 *   DATABASE_URL=postgres://… npm run bench:ws
 *
 * Every client is two sockets in this process and both servers stay up, so keep
 * --clients under a quarter of `ulimit -n`. Heap per socket is measured around
 * connecting (client and server side together; with --expose-gc it is exact).
 *
 * Clients acknowledge what they receive, as real ones do (`--no-ack`: they do
 * not); runs start once the previous run's acks are stored. Medians of the runs.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import { randomUUID } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { parseArgs } from 'node:util'
import WebSocket, { WebSocketServer } from 'ws'
import app from '../app.js'
import { loadConfig } from '../lib/config.js'
import { serverOptions } from '../lib/server-options.js'
import { batchOf } from '../plugins/app/websocket/index.js'

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '1000' },
    runs: { type: 'string', default: '7' },
    size: { type: 'string', default: '200' },
    'no-ack': { type: 'boolean', default: false }
  }
})
const CLIENTS = Number(values.clients)
const RUNS = Number(values.runs)
const CONTENT = 'x'.repeat(Number(values.size))
const ACK = !values['no-ack']

const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}
const ms = (x: number) => `${x.toFixed(1)} ms`

/** Counts message frames across all clients; `until(n)` resolves when n more have arrived. */
class Arrivals {
  private count = 0
  private target = Infinity
  private done: () => void = () => {}
  /** When the first frame of the current round arrived (performance.now()). */
  first = 0
  hit () {
    if (this.first === 0) this.first = performance.now()
    if (++this.count === this.target) this.done()
  }

  until (more: number): Promise<void> {
    this.first = 0
    return new Promise(resolve => {
      this.target = this.count + more
      this.done = resolve
    })
  }
}

type Frame = { type: string, id?: string }

/** Opens `n` sockets, 100 at a time, each ready at 'open' or, for gatehouse, at its `ready` frame. */
async function openClients (n: number, url: (i: number) => string, onMessage: (ws: WebSocket, frame: Frame) => void, waitForReady: boolean) {
  const sockets: WebSocket[] = []
  for (let i = 0; i < n; i += 100) {
    await Promise.all(Array.from({ length: Math.min(100, n - i) }, (_, k) => new Promise<void>((resolve, reject) => {
      const ws = new WebSocket(url(i + k), { perMessageDeflate: false })
      sockets.push(ws)
      ws.on('error', reject)
      ws.on('message', raw => {
        const frame = JSON.parse(raw.toString()) as Frame
        if (frame.type === 'ready') resolve()
        else onMessage(ws, frame)
      })
      if (!waitForReady) ws.once('open', () => resolve())
    })))
  }
  return sockets
}

interface Subject { run (): Promise<number>, close (): Promise<void>, heapPerClient?: number }

const heap = () => {
  (globalThis as { gc?: () => void }).gc?.()
  return process.memoryUsage().heapUsed
}

async function bare (): Promise<Subject> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false, maxPayload: 64 * 1024 })
  await new Promise(resolve => wss.once('listening', resolve))
  // A peer resetting its connection must not end the benchmark (ws throws on an unheard 'error').
  wss.on('connection', ws => ws.on('error', () => {}))
  const port = (wss.address() as AddressInfo).port
  const arrivals = new Arrivals()
  const heapBefore = heap()
  const clients = await openClients(CLIENTS, () => `ws://127.0.0.1:${port}`, (_ws, frame) => {
    if (frame.type === 'message') arrivals.hit()
  }, false)
  const heapPerClient = (heap() - heapBefore) / CLIENTS

  return {
    heapPerClient,
    async run () {
      const frame = JSON.stringify({ type: 'message', id: randomUUID(), senderId: 'bench-sender', content: CONTENT, createdAt: new Date().toISOString() })
      const all = arrivals.until(CLIENTS)
      const start = performance.now()
      const cpu = process.cpuUsage()
      for (const ws of wss.clients) ws.send(frame)
      fanOutCpu.bare.push(cpuMs(cpu))
      await all
      return performance.now() - start
    },
    async close () {
      for (const ws of clients) ws.terminate()
      await new Promise(resolve => wss.close(resolve))
    }
  }
}

async function gatehouse (): Promise<{ endToEnd: Subject, hubOnly: Subject }> {
  const config = {
    ...loadConfig({ LOG_LEVEL: 'warn', JWT_SECRET: 'bench-secret-bench-secret-bench-secret', RATE_LIMIT_MAX: '100000000', WS_CONNECT_RATE_MAX: '100000000', MAX_RECIPIENTS: String(Math.max(CLIENTS, 10_000)) }),
    store: process.env.DATABASE_URL ? { kind: 'postgres' as const, url: process.env.DATABASE_URL } : { kind: 'pglite' as const, dataDir: null }
  }
  const server: FastifyInstance = Fastify(serverOptions(config, { logger: false, pluginTimeout: 120_000 }))
  await server.register(app, { config })
  await server.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(server.server.address() as AddressInfo).port}`

  const org = `bench_${randomUUID()}`
  const sender = await server.store.upsertUser({ id: `${org}_sender`, organization_id: org, name: 'Bench sender' })
  const recipients: string[] = []
  for (let i = 0; i < CLIENTS; i++) {
    const user = await server.store.upsertUser({ id: `${org}_${i}`, organization_id: org })
    recipients.push(user!.id)
  }
  const tokenId = randomUUID()
  await server.store.createApiToken({ id: tokenId, userId: sender!.id, createdBy: null, name: 'bench', expiresAt: null })
  const apiToken = server.tokens.issueApi(tokenId, sender!.id, null)

  const arrivals = new Arrivals()
  const heapBefore = heap()
  const clients = await openClients(CLIENTS, i => `${base.replace('http', 'ws')}/ws?token=${server.tokens.issueWsTicket(recipients[i]).token}`, (ws, frame) => {
    if (frame.type !== 'message') return
    arrivals.hit()
    if (ACK) ws.send(JSON.stringify({ type: 'ack', ids: [frame.id] }))
  }, true)
  const heapPerClient = (heap() - heapBefore) / CLIENTS

  /** Acks are written after the clients have their messages; let them land so runs do not overlap. */
  const settle = async () => {
    if (!ACK) return
    for (const id of [recipients[0], recipients[CLIENTS >> 1], recipients[CLIENTS - 1]]) {
      while ((await server.store.pendingMessages(id, 0, 1)).length > 0) await new Promise(resolve => setTimeout(resolve, 5))
    }
  }

  const endToEnd: Subject = {
    heapPerClient,
    async run () {
      const all = arrivals.until(CLIENTS)
      const start = performance.now()
      const res = await fetch(`${base}/api/messages/send-bulk`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ recipientIds: recipients, content: CONTENT })
      })
      if (res.status !== 200) throw new Error(`send-bulk answered ${res.status}: ${await res.text()}`)
      await all
      const elapsed = performance.now() - start
      firstFrame.push(arrivals.first - start)
      await settle()
      return elapsed
    },
    async close () {
      for (const ws of clients) ws.terminate()
      if (config.store.kind === 'postgres') for (const id of [sender!.id, ...recipients]) await server.store.deleteUser({ id })
      await server.close()
    }
  }
  const hubOnly: Subject = {
    async run () {
      const outcome = await server.store.send({
        senderId: sender!.id, senderOrganizationId: org, senderIsAdmin: false, recipientIds: recipients, content: CONTENT, templateId: null, idempotencyKey: null, requestHash: null
      })
      if (!outcome.ok) throw new Error('store refused the send')
      const all = arrivals.until(CLIENTS)
      const start = performance.now()
      const cpu = process.cpuUsage()
      await server.hub.publish(batchOf({ senderId: sender!.id, content: CONTENT, templateId: null }, outcome.result))
      fanOutCpu.hubOnly.push(cpuMs(cpu))
      await all
      const elapsed = performance.now() - start
      await settle()
      return elapsed
    },
    async close () {}
  }
  return { endToEnd, hubOnly }
}

/**
 * CPU time of handing every socket its frame (the writes happen within the call):
 * on a shared machine it moves far less than the time until the clients have it.
 */
const fanOutCpu = { bare: [] as number[], hubOnly: [] as number[] }
const cpuMs = (since: NodeJS.CpuUsage) => {
  const { user, system } = process.cpuUsage(since)
  return (user + system) / 1000
}
/** POST send-bulk -> first client has its frame, per run. */
const firstFrame: number[] = []
// Both servers up at once and their runs interleaved, so drift on a shared machine hits all alike.
const subjects = { bare: await bare(), ...await gatehouse() }
const times: Record<keyof typeof subjects, number[]> = { bare: [], hubOnly: [], endToEnd: [] }
for (let run = 0; run < RUNS; run++) {
  for (const name of Object.keys(subjects) as Array<keyof typeof subjects>) times[name].push(await subjects[name].run())
}
for (const subject of Object.values(subjects)) await subject.close()

const baseline = median(times.bare)
const line = (label: string, xs: number[]) =>
  `  ${label.padEnd(44)} median ${ms(median(xs)).padStart(9)}  x${(median(xs) / baseline).toFixed(2)}  (runs: ${xs.map(x => x.toFixed(0)).join(', ')})`
console.log(`ws fan-out, ${CLIENTS} clients, ${CONTENT.length}-byte content, ${RUNS} runs, ${ACK ? 'clients ack' : 'no acks'}, store: ${process.env.DATABASE_URL ? 'postgres' : 'embedded (in memory)'}`)
const kib = (bytes = 0) => `${(bytes / 1024).toFixed(1)} KiB`
console.log(`  heap per connected client, both ends: bare ws ${kib(subjects.bare.heapPerClient)}, gatehouse ${kib(subjects.endToEnd.heapPerClient)}`)
console.log(line('bare ws server, broadcast one frame', times.bare))
console.log(line('gatehouse hub.publish of a stored batch', times.hubOnly))
console.log(line('gatehouse POST send-bulk -> all received', times.endToEnd))
console.log(line('gatehouse POST send-bulk -> first received', firstFrame))
console.log(`  CPU to write every socket its frame: bare ws ${ms(median(fanOutCpu.bare))}, gatehouse hub.publish ${ms(median(fanOutCpu.hubOnly))}` +
  ` x${(median(fanOutCpu.hubOnly) / median(fanOutCpu.bare)).toFixed(2)}`)
