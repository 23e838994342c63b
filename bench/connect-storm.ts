/**
 * A connect storm, as after a deploy: a freshly started gatehouse (cold caches)
 * and every client reconnecting at once. Meanwhile a few sockets that were
 * already open keep receiving sends, and `/health` is polled: the storm must not
 * starve either. Each probe is compared with the same probe before the storm,
 * in the same run.
 *
 *   npm run bench:connect-storm -- [--clients 10000] [--steady 20] [--per-process 5000]
 *     [--concurrency 2000] [--rounds 3] [--out bench/results/connect-storm.json]
 *
 * `--concurrency` handshakes at a time per client process (2,000 by default,
 * against the server's listen backlog of 511: connections beyond it wait for the
 * kernel to retry, as a real storm's would). Tickets are minted beforehand; a
 * browser fetches one over HTTP first, which this does not count.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { epochNow } from './compare/protocol.js'
import { machine, percentile, sleep, split, startClients, startServer, type ClientProcess, type ServerProcess } from './compare/processes.js'

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '10000' },
    steady: { type: 'string', default: '20' },
    'per-process': { type: 'string', default: '5000' },
    concurrency: { type: 'string', default: '2000' },
    rounds: { type: 'string', default: '3' },
    'baseline-ms': { type: 'string', default: '5000' },
    out: { type: 'string', default: 'bench/results/connect-storm.json' }
  }
})
const N = Number(values.clients)
const STEADY = Number(values.steady)
const ROUNDS = Number(values.rounds)
const users = Array.from({ length: STEADY + N }, (_, i) => `u${i + 1}`)
const steadyUsers = users.slice(0, STEADY)
const stormUsers = users.slice(STEADY)

interface Probes { health: number[], delivery: number[], failedSends: number }

/** Polls /health every 100 ms and sends to one steady socket every 250 ms (one at a time) until `stop`. */
async function probe (server: ServerProcess, steady: ClientProcess, stop: Promise<void>): Promise<Probes> {
  const state = { stopped: false }
  stop.then(() => { state.stopped = true }, () => {})
  const { port, sendPath, sendHeaders } = server.listening
  const out: Probes = { health: [], delivery: [], failedSends: 0 }
  const health = (async () => {
    while (!state.stopped) {
      const start = performance.now()
      const res = await fetch(`http://127.0.0.1:${port}/health`)
      await res.arrayBuffer()
      out.health.push(performance.now() - start)
      await sleep(100)
    }
  })()
  const delivery = (async () => {
    for (let i = 0; !state.stopped; i++) {
      const received = steady.next('received')
      await steady.request({ type: 'expect', count: 1 }, 'expecting')
      const start = epochNow()
      const res = await fetch(`http://127.0.0.1:${port}${sendPath}`, {
        method: 'POST',
        headers: { ...sendHeaders, 'content-type': 'application/json' },
        body: JSON.stringify({ recipientIds: [steadyUsers[i % STEADY]], content: `probe ${i}` })
      })
      if (res.status === 200) {
        out.delivery.push((await received).first - start)
      } else {
        // Refused (503: the store did not answer in time): counted, the storm goes on.
        await res.arrayBuffer()
        out.failedSends++
      }
      await sleep(250)
    }
  })()
  await Promise.all([health, delivery])
  return out
}

const stats = (xs: number[]) => xs.length === 0 ? { count: 0, p50: NaN, p99: NaN, max: NaN } : { count: xs.length, p50: percentile(xs, 0.5), p99: percentile(xs, 0.99), max: Math.max(...xs) }
const about = machine()
const startedAt = new Date().toISOString()
const rounds: Array<{ stormMs: number, failedSockets: number, baseline: ReturnType<typeof summarize>, storm: ReturnType<typeof summarize> }> = []
function summarize (p: Probes) { return { health: stats(p.health), delivery: stats(p.delivery), failedSends: p.failedSends } }

console.log(`connect-storm: ${N} sockets reconnecting at once to a fresh gatehouse, ${STEADY} steady sockets probed, ${ROUNDS} rounds, node ${process.version}, load ${about.loadAverageAtStart.join(' ')}`)
for (let r = 0; r < ROUNDS; r++) {
  const server = await startServer('gatehouse', STEADY + N)
  const steady = startClients()
  const stormers = Array.from({ length: Math.ceil(N / Number(values['per-process'])) }, startClients)
  const { credentials } = await server.request({ type: 'credentials', count: STEADY + N }, 'credentials')
  const steadyOpen = await steady.request({ type: 'connect', kind: 'gatehouse', port: server.listening.port, credentials: credentials.slice(0, STEADY), users: steadyUsers, concurrency: STEADY, ack: true }, 'connected')
  if (steadyOpen.failed > 0) throw new Error(`steady sockets failed: ${steadyOpen.firstError}`)

  let endBaseline!: () => void
  const baseline = await probe(server, steady, new Promise(resolve => { endBaseline = resolve; setTimeout(resolve, Number(values['baseline-ms'])) }))
  endBaseline()

  let endStorm!: () => void
  const stormEnded = new Promise<void>(resolve => { endStorm = resolve })
  const probing = probe(server, steady, stormEnded)
  const stormStart = performance.now()
  const shares = split(credentials.slice(STEADY), stormers.length)
  const userShares = split(stormUsers, stormers.length)
  const results = await Promise.all(stormers.map((child, i) => child.request({
    type: 'connect', kind: 'gatehouse', port: server.listening.port, credentials: shares[i], users: userShares[i], concurrency: Number(values.concurrency), ack: true
  }, 'connected')))
  const stormMs = performance.now() - stormStart
  endStorm()
  const storm = await probing
  const failed = results.reduce((sum, x) => sum + x.failed, 0)
  if (failed > 0) console.log(`  ${failed} sockets refused in the storm, first: ${results.find(x => x.firstError)?.firstError}`)
  rounds.push({ stormMs, failedSockets: failed, baseline: summarize(baseline), storm: summarize(storm) })
  const last = rounds[rounds.length - 1]
  const f = (x: number) => x.toFixed(1)
  console.log(`  round ${r + 1}: ${N} sockets in ${Math.round(stormMs)} ms`)
  console.log(`    /health     before p50 ${f(last.baseline.health.p50)} p99 ${f(last.baseline.health.p99)} max ${f(last.baseline.health.max)} ms | during p50 ${f(last.storm.health.p50)} p99 ${f(last.storm.health.p99)} max ${f(last.storm.health.max)} ms (${last.storm.health.count} polls)`)
  console.log(`    delivery    before p50 ${f(last.baseline.delivery.p50)} p99 ${f(last.baseline.delivery.p99)} max ${f(last.baseline.delivery.max)} ms | during p50 ${f(last.storm.delivery.p50)} p99 ${f(last.storm.delivery.p99)} max ${f(last.storm.delivery.max)} ms (${last.storm.delivery.count} sends, ${last.storm.failedSends} refused)`)

  for (const child of [steady, ...stormers]) child.process.send({ type: 'stop' })
  await server.request({ type: 'close' }, 'closed').catch(() => {})
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const med = (pick: (r: typeof rounds[number]) => number) => median(rounds.map(pick))
const summary = {
  stormMs: med(r => r.stormMs),
  failedSockets: med(r => r.failedSockets),
  refusedSendsDuringStorm: med(r => r.storm.failedSends),
  health: { beforeP50: med(r => r.baseline.health.p50), duringP50: med(r => r.storm.health.p50), duringP99: med(r => r.storm.health.p99), duringMax: med(r => r.storm.health.max) },
  delivery: { beforeP50: med(r => r.baseline.delivery.p50), duringP50: med(r => r.storm.delivery.p50), duringP99: med(r => r.storm.delivery.p99), duringMax: med(r => r.storm.delivery.max) }
}
console.log(`\nmedians of ${ROUNDS} rounds: storm ${Math.round(summary.stormMs)} ms; /health p50 ${summary.health.beforeP50.toFixed(1)} -> ${summary.health.duringP50.toFixed(1)} ms (p99 ${summary.health.duringP99.toFixed(1)}, max ${summary.health.duringMax.toFixed(1)}); ` +
  `delivery p50 ${summary.delivery.beforeP50.toFixed(1)} -> ${summary.delivery.duringP50.toFixed(1)} ms (p99 ${summary.delivery.duringP99.toFixed(1)}, max ${summary.delivery.duringMax.toFixed(1)})`)

mkdirSync(dirname(values.out), { recursive: true })
writeFileSync(values.out, JSON.stringify({
  benchmark: 'connect-storm',
  startedAt,
  finishedAt: new Date().toISOString(),
  machine: { ...about, loadAverageAtEnd: loadavg().map(x => Math.round(x * 100) / 100) },
  parameters: { clients: N, steady: STEADY, rounds: ROUNDS, concurrency: Number(values.concurrency), store: process.env.DATABASE_URL ? 'postgres' : 'embedded' },
  summary,
  rounds
}, null, 2) + '\n')
console.log(`figures written to ${values.out}`)
