/**
 * Live delivery latency across processes: two gatehouse processes
 * (`node dist/server.js`) on one Postgres and one Redis; a sender posts
 * send-private to process A at a steady rate; the recipient has one socket on A
 * (same process as the send) and one on B (through Redis). Reports p50/p99 from
 * the send request to each socket's frame, in the same run.
 *
 *   DATABASE_URL=postgres://… (migrated) REDIS_URL=redis://… npm run bench:cross-process -- [--rate 1000] [--seconds 10]
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import Fastify from 'fastify'
import WebSocket from 'ws'
import app from '../app.js'
import { loadConfig } from '../lib/config.js'
import { serverOptions } from '../lib/server-options.js'

const { values } = parseArgs({ options: { rate: { type: 'string', default: '1000' }, seconds: { type: 'string', default: '10' } } })
const RATE = Number(values.rate)
const SECONDS = Number(values.seconds)
const { DATABASE_URL, REDIS_URL } = process.env
if (!DATABASE_URL || !REDIS_URL) throw new Error('set DATABASE_URL (migrated) and REDIS_URL')
const SECRET = 'bench-secret-bench-secret-bench-secret'
const prefix = `gatehouse-bench-${randomUUID().slice(0, 8)}:`

function start (): Promise<{ url: string, child: ChildProcess }> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('../server.js', import.meta.url))], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, NODE_ENV: 'production', JWT_SECRET: SECRET, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', REDIS_KEY_PREFIX: prefix, RATE_LIMIT_MAX: '100000000' }
  })
  return new Promise((resolve, reject) => {
    child.once('exit', code => reject(new Error(`server exited with ${code}`)))
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(chunk)
      if (match) resolve({ url: match[1], child })
    })
  })
}

// Seeds users and signs tokens with the servers' secret.
const config = loadConfig({ LOG_LEVEL: 'warn', JWT_SECRET: SECRET, DATABASE_URL })
const seeder = Fastify(serverOptions(config, { logger: false }))
await seeder.register(app, { config })
await seeder.ready()
const sender = (await seeder.store.upsertUser({ id: `bench-sender-${randomUUID()}`, role: 'admin' }))!
const recipient = (await seeder.store.upsertUser({ id: `bench-recipient-${randomUUID()}` }))!
const tokenId = randomUUID()
await seeder.store.createApiToken({ id: tokenId, userId: sender.id, createdBy: null, name: 'bench', expiresAt: null })
const apiToken = seeder.tokens.issueApi(tokenId, sender.id, null)

const [a, b] = await Promise.all([start(), start()])
const sentAt = new Map<string, number>()
const latencies: Record<'same' | 'cross', number[]> = { same: [], cross: [] }

async function socket (base: string, kind: 'same' | 'cross'): Promise<WebSocket> {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/ws?token=${seeder.tokens.issueWsTicket(recipient.id).token}`)
  ws.on('message', data => {
    const frame = JSON.parse(data.toString())
    if (frame.type !== 'message') return
    const at = sentAt.get(frame.content)
    if (at !== undefined) latencies[kind].push(performance.now() - at)
  })
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  return ws
}
const sockets = [await socket(a.url, 'same'), await socket(b.url, 'cross')]

// A steady rate: every 10 ms, the sends due by then.
let sent = 0
let failed = 0
const began = performance.now()
await new Promise<void>(resolve => {
  const timer = setInterval(() => {
    const due = Math.min(RATE * SECONDS, Math.floor((performance.now() - began) * RATE / 1000))
    for (; sent < due; sent++) {
      const content = `m${sent}`
      sentAt.set(content, performance.now())
      fetch(`${a.url}/api/messages/send-private`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ recipientId: recipient.id, content })
      }).then(res => { if (res.status !== 200) failed++; return res.arrayBuffer() }, () => { failed++ })
    }
    if (sent >= RATE * SECONDS) {
      clearInterval(timer)
      resolve()
    }
  }, 10)
})
await new Promise(resolve => setTimeout(resolve, 2000))

const pct = (xs: number[], p: number) => [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor(xs.length * p))]
const elapsed = (performance.now() - began) / 1000
console.log(`rate=${RATE}/s for ${SECONDS}s: ${sent} sends in ${elapsed.toFixed(1)} s, ${failed} failed`)
for (const kind of ['same', 'cross'] as const) {
  const xs = latencies[kind]
  console.log(`${kind === 'same' ? 'socket on the accepting process' : 'socket on the other process  '}: ${xs.length} received, p50 ${pct(xs, 0.5).toFixed(1)} ms, p99 ${pct(xs, 0.99).toFixed(1)} ms`)
}
for (const ws of sockets) ws.terminate()
for (const { child } of [a, b]) child.kill('SIGTERM')
await seeder.close()
