/**
 * Live delivery latency at a steady send rate, across processes against one.
 *
 * Each round runs the same flow twice, one after the other, on the same machine:
 *   - one process: one gatehouse process without Redis (deliveries in memory); the
 *     recipient's socket is on it;
 *   - two processes: two gatehouse processes on one Redis; sends go to A, the
 *     recipient has one socket on A (its delivery still travels through Redis) and
 *     one on B (the other process).
 * All on one Postgres. Latency is from the send request leaving this process to
 * the frame arriving on the socket. Reports p50/p99 medians over the rounds, the
 * send rate actually achieved, and the CPU each process used (what saturates).
 *
 *   DATABASE_URL=postgres://… (migrated) REDIS_URL=redis://… npm run bench:cross-process -- \
 *     [--rate 100,200,400] [--seconds 10] [--rounds 3] [--prof DIR]
 *
 * `--rate` takes several rates, measured in turn. `--prof DIR` writes a CPU
 * profile of every gatehouse process there (node --cpu-prof).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Agent, request } from 'node:http'
import Fastify from 'fastify'
import WebSocket from 'ws'
import app from '../app.js'
import { loadConfig } from '../lib/config.js'
import { serverOptions } from '../lib/server-options.js'

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '100,200,400' },
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    prof: { type: 'string' }
  }
})
const RATES = values.rate.split(',').map(Number)
const SECONDS = Number(values.seconds)
const ROUNDS = Number(values.rounds)
const { DATABASE_URL, REDIS_URL } = process.env
if (!DATABASE_URL || !REDIS_URL) throw new Error('set DATABASE_URL (migrated) and REDIS_URL')
const SECRET = 'bench-secret-bench-secret-bench-secret'
const prefix = `gatehouse-bench-${randomUUID().slice(0, 8)}:`
const TICKS_PER_SECOND = 100 // USER_HZ, as /proc reports CPU time

interface Server { url: string, child: ChildProcess }

function start (redis: boolean): Promise<Server> {
  const args = values.prof ? ['--cpu-prof', `--cpu-prof-dir=${values.prof}`] : []
  const env: Record<string, string | undefined> = {
    ...process.env, NODE_ENV: 'production', JWT_SECRET: SECRET, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', REDIS_KEY_PREFIX: prefix, RATE_LIMIT_MAX: '100000000'
  }
  if (!redis) delete env.REDIS_URL
  const child = spawn(process.execPath, [...args, fileURLToPath(new URL('../server.js', import.meta.url))], { stdio: ['ignore', 'pipe', 'inherit'], env })
  return new Promise((resolve, reject) => {
    child.once('exit', code => reject(new Error(`server exited with ${code}`)))
    let seen = ''
    const listening = (chunk: string) => {
      seen = (seen + chunk).slice(-4096)
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(seen)
      if (!match) return
      // From now on the logs are only drained, not read.
      child.stdout!.off('data', listening).on('data', () => {})
      resolve({ url: match[1], child })
    }
    child.stdout!.setEncoding('utf8').on('data', listening)
  })
}

async function stop (server: Server): Promise<void> {
  const exited = new Promise(resolve => server.child.once('exit', resolve))
  server.child.kill('SIGTERM')
  await exited
}

/** CPU seconds a process has used (user + system), from /proc. */
function cpuSeconds (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND
}
/** Busy and total CPU time of the whole machine, from /proc/stat. */
function machineTicks (): { busy: number, total: number } {
  const [, ...fields] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).map(Number)
  const total = fields.reduce((a, b) => a + b, 0)
  return { busy: total - fields[3] - fields[4], total }
}

// Seeds users and signs tokens with the servers' secret.
const config = loadConfig({ LOG_LEVEL: 'warn', JWT_SECRET: SECRET, DATABASE_URL })
const seeder = Fastify(serverOptions(config, { logger: false }))
await seeder.register(app, { config })
await seeder.ready()
const sender = (await seeder.store.upsertUser({ id: `bench-sender-${randomUUID()}`, role: 'admin' }))!
const tokenId = randomUUID()
await seeder.store.createApiToken({ id: tokenId, userId: sender.id, createdBy: null, name: 'bench', expiresAt: null })
const apiToken = seeder.tokens.issueApi(tokenId, sender.id, null)
// Connections are reused (keep-alive), as a busy client would; enough of them for every send in flight.
const agent = new Agent({ keepAlive: true, maxSockets: 256 })

/** POST send-private; resolves with the status (0: the request failed). */
function send (base: string, recipientId: string, content: string): Promise<number> {
  const body = JSON.stringify({ recipientId, content })
  return new Promise(resolve => {
    const req = request(`${base}/api/messages/send-private`, {
      method: 'POST',
      agent,
      headers: { authorization: `Bearer ${apiToken}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }
    }, res => {
      res.resume()
      res.once('end', () => resolve(res.statusCode ?? 0))
    })
    req.once('error', () => resolve(0))
    req.end(body)
  })
}

type Where = 'one' | 'same' | 'cross'
interface Phase { achieved: number, failed: number, answer: { p50: number, p99: number }, lost: Record<string, number>, latency: Record<string, { p50: number, p99: number }>, cpu: Record<string, number>, machine: number }

const pct = (xs: number[], p: number) => xs.length === 0 ? NaN : [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor(xs.length * p))]

/** Sends at `rate` for SECONDS to `target`, measuring delivery to each socket. */
async function phase (rate: number, target: Server, sockets: Array<[Where, Server]>, processes: Record<string, Server>): Promise<Phase> {
  const recipient = (await seeder.store.upsertUser({ id: `bench-recipient-${randomUUID()}` }))!
  const sentAt = new Map<string, number>()
  const latencies: Partial<Record<Where, number[]>> = {}
  const open: WebSocket[] = []
  for (const [where, server] of sockets) {
    const samples: number[] = latencies[where] = []
    const ws = new WebSocket(`${server.url.replace('http', 'ws')}/ws?token=${seeder.tokens.issueWsTicket(recipient.id).token}`)
    ws.on('message', data => {
      const frame = JSON.parse(data.toString())
      if (frame.type !== 'message') return
      const at = sentAt.get(frame.content)
      if (at !== undefined) samples.push(performance.now() - at)
    })
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    open.push(ws)
  }

  // Warm-up, not measured: connections opened, code compiled.
  for (let i = 0; i < 20; i++) await send(target.url, recipient.id, `warm-up ${i}`)

  const cpuBefore = Object.fromEntries(Object.entries({ ...processes, bench: { child: { pid: process.pid } } }).map(([name, p]) => [name, cpuSeconds(p.child.pid!)]))
  const machineBefore = machineTicks()
  const total = rate * SECONDS
  let sent = 0
  let done = 0
  let failed = 0
  const answered: number[] = []
  const began = performance.now()
  let finished!: () => void
  const allDone = new Promise<void>(resolve => { finished = resolve })
  const complete = () => { if (++done === total) finished() }
  // A steady rate: every 10 ms, the sends due by then.
  await new Promise<void>(resolve => {
    const timer = setInterval(() => {
      const due = Math.min(total, Math.floor((performance.now() - began) * rate / 1000))
      for (; sent < due; sent++) {
        const content = `m${sent}`
        sentAt.set(content, performance.now())
        const at = performance.now()
        send(target.url, recipient.id, content).then(status => {
          answered.push(performance.now() - at)
          if (status !== 200) failed++
          complete()
        })
      }
      if (sent >= total) {
        clearInterval(timer)
        resolve()
      }
    }, 10)
  })
  await allDone
  const elapsed = (performance.now() - began) / 1000
  // Deliveries still on their way get two seconds.
  const expected = total - failed
  const deadline = Date.now() + 2000
  while (Date.now() < deadline && Object.values(latencies).some(xs => xs.length < expected)) await new Promise(resolve => setTimeout(resolve, 20))
  const machineAfter = machineTicks()
  const cpu = Object.fromEntries(Object.entries(cpuBefore).map(([name, before]) => {
    const pid = name === 'bench' ? process.pid : processes[name].child.pid!
    return [name, (cpuSeconds(pid) - before) / elapsed]
  }))
  for (const ws of open) ws.terminate()
  return {
    achieved: total / elapsed,
    failed,
    answer: { p50: pct(answered, 0.5), p99: pct(answered, 0.99) },
    lost: Object.fromEntries(Object.entries(latencies).map(([where, xs]) => [where, expected - xs.length])),
    latency: Object.fromEntries(Object.entries(latencies).map(([where, xs]) => [where, { p50: pct(xs, 0.5), p99: pct(xs, 0.99) }])),
    cpu,
    machine: (machineAfter.busy - machineBefore.busy) / (machineAfter.total - machineBefore.total) * 2
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const ms = (x: number) => Number.isNaN(x) ? '—' : x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(1)} ms`

console.log(`steady send-private for ${SECONDS}s per phase, ${ROUNDS} rounds per rate, one process vs two (Redis), Postgres`)
for (const rate of RATES) {
  const rounds: Array<{ one: Phase, two: Phase }> = []
  for (let round = 0; round < ROUNDS; round++) {
    const single = await start(false)
    const one = await phase(rate, single, [['one', single]], { single })
    await stop(single)
    const [a, b] = await Promise.all([start(true), start(true)])
    const two = await phase(rate, a, [['same', a], ['cross', b]], { a, b })
    await Promise.all([stop(a), stop(b)])
    rounds.push({ one, two })
  }
  const line = (label: string, pick: (r: { one: Phase, two: Phase }) => Phase, where: Where) => {
    const p50 = median(rounds.map(r => pick(r).latency[where].p50))
    const p99 = median(rounds.map(r => pick(r).latency[where].p99))
    const lost = rounds.reduce((n, r) => n + pick(r).lost[where], 0)
    console.log(`  ${label}: p50 ${ms(p50)}, p99 ${ms(p99)}${lost ? `, ${lost} not delivered within 2 s of the last send` : ''}`)
  }
  const cpu = (pick: (r: { one: Phase, two: Phase }) => Phase) => {
    const names = Object.keys(pick(rounds[0]).cpu)
    return names.map(name => `${name} ${(median(rounds.map(r => pick(r).cpu[name])) * 100).toFixed(0)}%`).join(', ') +
      `; machine ${median(rounds.map(r => pick(r).machine)).toFixed(2)} of 2 cores busy`
  }
  console.log(`rate ${rate}/s: achieved ${median(rounds.map(r => r.one.achieved)).toFixed(0)}/s one process, ${median(rounds.map(r => r.two.achieved)).toFixed(0)}/s two; failed sends ${rounds.reduce((n, r) => n + r.one.failed + r.two.failed, 0)}`)
  for (const [label, pick] of [['one process', (r: { one: Phase, two: Phase }) => r.one], ['two processes', (r: { one: Phase, two: Phase }) => r.two]] as const) {
    console.log(`  send answered (${label}): p50 ${ms(median(rounds.map(r => pick(r).answer.p50)))}, p99 ${ms(median(rounds.map(r => pick(r).answer.p99)))}`)
  }
  line('one process, socket on it          ', r => r.one, 'one')
  line('two processes, socket on the sender', r => r.two, 'same')
  line('two processes, socket on the other ', r => r.two, 'cross')
  console.log(`  CPU one process: ${cpu(r => r.one)}`)
  console.log(`  CPU two processes: ${cpu(r => r.two)}`)
}
agent.destroy()
await seeder.close()
