/**
 * gatehouse against a bare `ws` server and socket.io, in the same run, on the
 * scenarios that matter for real-time delivery:
 *
 *   connect   N sockets opened (gatehouse: ticket, upgrade, `ready` frame)
 *   memory    server RSS growth since it started, per socket (N open, after a GC;
 *             the fan-outs of earlier rounds included: bench:ws-idle isolates the sockets)
 *   fan-out   one send-bulk to all N sockets, and one to 1,000 of them (every
 *             tenth): time from the request to the first and to the last frame
 *
 *   npm run bench:ws-compare -- [--clients 10000] [--rounds 5] [--small 1000]
 *     [--per-process 5000] [--concurrency 500] [--out bench/results/ws-compare.json]
 *     [--baseline ../other-checkout/dist]   (adds gatehouse built elsewhere: before/after in one run;
 *     on Postgres give it a database of its own, migrated by it, in BASELINE_DATABASE_URL)
 *
 * Every server runs in a process of its own (gatehouse with its embedded store
 * in another, as in production; DATABASE_URL for Postgres, migrated first), and
 * the clients in `ceil(N / per-process)` further processes: one process may hold
 * only `ulimit -n` descriptors, and the server holds one per socket. Rounds are
 * interleaved (the order rotates each round) with only one subject's sockets
 * open at a time, so drift on a shared machine hits all three alike. Figures are
 * min/median/max over the rounds, and ratios are of medians.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { epochNow, LABELS, SUBJECTS, type SubjectKind } from './compare/protocol.js'
import { machine, sleep, split, startClients, startServer, summary, type ClientProcess, type ServerProcess } from './compare/processes.js'

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '10000' },
    rounds: { type: 'string', default: '5' },
    small: { type: 'string', default: '1000' },
    'per-process': { type: 'string', default: '5000' },
    concurrency: { type: 'string', default: '500' },
    size: { type: 'string', default: '200' },
    subjects: { type: 'string', default: SUBJECTS.join(',') },
    baseline: { type: 'string' },
    out: { type: 'string', default: 'bench/results/ws-compare.json' }
  }
})
const N = Number(values.clients)
const ROUNDS = Number(values.rounds)
const SMALL = Math.min(Number(values.small), N)
const PER_PROCESS = Number(values['per-process'])
const CONCURRENCY = Number(values.concurrency)
const CONTENT = 'x'.repeat(Number(values.size))
const subjects = [...values.subjects.split(',') as SubjectKind[], ...values.baseline ? ['baseline' as const] : []]

const users = Array.from({ length: N }, (_, i) => `u${i + 1}`)
// Every tenth user: the small send reaches sockets of every client process.
const stride = Math.max(1, Math.floor(N / SMALL))
const smallRecipients = users.filter((_, i) => i % stride === 0).slice(0, SMALL)

type Metric = 'connectMs' | 'rssPerSocketKiB' | 'bigFirstMs' | 'bigLastMs' | 'smallFirstMs' | 'smallLastMs'
const METRICS: Record<Metric, string> = {
  connectMs: `connect ${N} sockets (ms)`,
  rssPerSocketKiB: 'server RSS growth per open socket (KiB)',
  bigFirstMs: `send-bulk to ${N}: first frame (ms)`,
  bigLastMs: `send-bulk to ${N}: last frame (ms)`,
  smallFirstMs: `send-bulk to ${SMALL} of ${N}: first frame (ms)`,
  smallLastMs: `send-bulk to ${SMALL} of ${N}: last frame (ms)`
}

const servers = new Map<SubjectKind, ServerProcess>()
for (const kind of subjects) servers.set(kind, await startServer(kind, N, values.baseline))
const clientProcesses: ClientProcess[] = Array.from({ length: Math.ceil(N / PER_PROCESS) }, startClients)
const figures = new Map<SubjectKind, Record<Metric, number[]>>()
/** Handshakes retried after a reset (a full listen backlog), per subject over all rounds. */
const retries = new Map<SubjectKind, number>()
for (const kind of subjects) figures.set(kind, { connectMs: [], rssPerSocketKiB: [], bigFirstMs: [], bigLastMs: [], smallFirstMs: [], smallLastMs: [] })

/** One send-bulk; the first and last arrival over every client process, from the request's start. */
async function fanOut (server: ServerProcess, recipients: string[]): Promise<{ first: number, last: number }> {
  const recipientSet = new Set(recipients)
  const shares = split(users, clientProcesses.length).map(slice => slice.filter(u => recipientSet.has(u)).length)
  const arrivals = clientProcesses.map((child, i) => shares[i] > 0 ? child.next('received') : null)
  await Promise.all(clientProcesses.map((child, i) => child.request({ type: 'expect', count: shares[i] }, 'expecting')))
  const { port, sendPath, sendHeaders } = server.listening
  const start = epochNow()
  const res = await fetch(`http://127.0.0.1:${port}${sendPath}`, {
    method: 'POST',
    headers: { ...sendHeaders, 'content-type': 'application/json' },
    body: JSON.stringify({ recipientIds: recipients, content: CONTENT })
  })
  if (res.status !== 200) throw new Error(`${server.kind}: send-bulk answered ${res.status}: ${await res.text()}`)
  const received = (await Promise.all(arrivals)).filter(r => r !== null)
  return { first: Math.min(...received.map(r => r.first)) - start, last: Math.max(...received.map(r => r.last)) - start }
}

async function round (kind: SubjectKind) {
  const server = servers.get(kind) as ServerProcess
  const out = figures.get(kind) as Record<Metric, number[]>
  const { credentials } = await server.request({ type: 'credentials', count: N }, 'credentials')
  const credentialShares = split(credentials, clientProcesses.length)
  const userShares = split(users, clientProcesses.length)
  const start = performance.now()
  const results = await Promise.all(clientProcesses.map((child, i) => child.request({
    type: 'connect', kind: kind === 'baseline' ? 'gatehouse' : kind, port: server.listening.port, credentials: credentialShares[i], users: userShares[i], concurrency: CONCURRENCY, ack: true
  }, 'connected')))
  out.connectMs.push(performance.now() - start)
  const failed = results.reduce((sum, r) => sum + r.failed, 0)
  retries.set(kind, (retries.get(kind) ?? 0) + results.reduce((sum, r) => sum + r.retries, 0))
  if (failed > 0) throw new Error(`${kind}: ${failed} sockets failed to open, first: ${results.find(r => r.firstError)?.firstError}`)

  await sleep(1000)
  const idle = await server.request({ type: 'memory' }, 'memory')
  if (idle.connections !== N) throw new Error(`${kind}: ${idle.connections} sockets open on the server, expected ${N}`)
  out.rssPerSocketKiB.push((idle.rss - server.listening.rss) / N / 1024)

  const big = await fanOut(server, users)
  out.bigFirstMs.push(big.first)
  out.bigLastMs.push(big.last)
  await sleep(1000) // gatehouse stores the acks meanwhile
  const small = await fanOut(server, smallRecipients)
  out.smallFirstMs.push(small.first)
  out.smallLastMs.push(small.last)

  await Promise.all(clientProcesses.map(child => child.request({ type: 'disconnect' }, 'disconnected')))
  for (let i = 0; i < 100 && (await server.request({ type: 'memory' }, 'memory')).connections > 0; i++) await sleep(100)
}

/** Prints the tables and writes the JSON; after every round, so a failed run keeps what it measured. */
function report (roundsDone: number, print = true) {
  const results = Object.fromEntries((Object.keys(METRICS) as Metric[]).map(metric => [metric, {
    label: METRICS[metric],
    subjects: Object.fromEntries(subjects.map(kind => [kind, summary((figures.get(kind) as Record<Metric, number[]>)[metric])]))
  }]))

  const fmt = (x: number) => x >= 100 ? x.toFixed(0) : x.toFixed(1)
  for (const metric of Object.keys(METRICS) as Metric[]) {
    if (!print) continue
    console.log(`\n${METRICS[metric]}`)
    const medians = results[metric].subjects
    for (const kind of subjects) {
      const s = medians[kind]
      const ratios = subjects.filter(k => k !== kind && kind === 'gatehouse').map(k => `${(s.median / medians[k].median).toFixed(2)}x ${LABELS[k]}`).join(', ')
      console.log(`  ${LABELS[kind].padEnd(10)} median ${fmt(s.median).padStart(7)}  min ${fmt(s.min).padStart(7)}  max ${fmt(s.max).padStart(7)}  ${ratios}`)
    }
  }

  mkdirSync(dirname(values.out), { recursive: true })
  writeFileSync(values.out, JSON.stringify({
    benchmark: 'ws-compare',
    startedAt,
    finishedAt: new Date().toISOString(),
    machine: { ...about, loadAverageAtEnd: loadavg().map(x => Math.round(x * 100) / 100) },
    parameters: { baseline: values.baseline ?? null, clients: N, rounds: roundsDone, small: SMALL, perProcess: PER_PROCESS, concurrency: CONCURRENCY, contentBytes: CONTENT.length, store: process.env.DATABASE_URL ? 'postgres' : 'embedded' },
    handshakesRetried: Object.fromEntries(retries),
    results
  }, null, 2) + '\n')
}

const about = machine()
const startedAt = new Date().toISOString()
console.log(`ws-compare: ${N} sockets, ${ROUNDS} rounds, ${clientProcesses.length} client processes, ${CONTENT.length}-byte messages, node ${process.version}, ${about.cpus} CPUs, load ${about.loadAverageAtStart.join(' ')}`)
for (let r = 0; r < ROUNDS; r++) {
  const order = subjects.map((_, i) => subjects[(i + r) % subjects.length])
  for (const kind of order) await round(kind)
  process.stdout.write(`  round ${r + 1}/${ROUNDS} done (${order.join(', ')})\n`)
  report(r + 1, false)
}
for (const server of servers.values()) await server.request({ type: 'close' }, 'closed').catch(() => {})
for (const child of clientProcesses) child.process.send({ type: 'stop' })

report(ROUNDS)
console.log(`\nfigures written to ${values.out}`)
