/**
 * POST /api/messages/send-bulk to 10,000 recipients over HTTP: median time of
 * several sends and peak RSS, on the embedded store and, when DATABASE_URL is
 * set, on that Postgres too. The baseline, in the same run, is a bare Fastify
 * route that parses the same body and answers a reply of the same shape and size,
 * so the ratio shows what storage and the service add to plain HTTP and JSON.
 *
 * Compiled, so the TypeScript loader's memory stays out of the RSS figures:
 *
 *   npm run bench:send-bulk -- [runs=7] [recipients=10000]
 *   DATABASE_URL=postgres://… npm run bench:send-bulk
 *
 * On Postgres it adds a uniquely named organization of 10,001 users and removes
 * them (and their messages) at the end.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import { randomUUID } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { Type } from '@sinclair/typebox'
import app from '../app.js'
import { loadConfig, type StoreBackend } from '../lib/config.js'
import { serverOptions } from '../lib/server-options.js'
import type { RpcDriver, SqlAccess } from '../plugins/app/supabase/driver.js'
import { createEmbeddedDriver } from '../plugins/app/supabase/drivers/embedded.js'
import { createPostgresDriver } from '../plugins/app/supabase/drivers/postgres.js'
import { migrate } from '../plugins/app/supabase/migrate.js'
import { SendResponseSchema } from '../schemas/messages.js'

const RUNS = Math.max(1, Number(process.argv[2] ?? 7))
const RECIPIENTS = Math.max(1, Number(process.argv[3] ?? 10_000))
// Room for the recipient list: a 100,000-recipient body is about 6 MiB.
const BODY_LIMIT = Math.max(1048576, RECIPIENTS * 64)

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}
const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MiB`
const peakRss = () => process.resourceUsage().maxRSS * 1024

interface Phase { times: number[], start: number, peak: number }

/** Samples RSS while `fn` runs: the peak of the sends, apart from what starting the store took. */
async function sampleRss (fn: () => Promise<number[]>): Promise<Phase> {
  const start = process.memoryUsage.rss()
  let peak = start
  const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage.rss()) }, 10)
  try {
    const times = await fn()
    return { times, start, peak: Math.max(peak, process.memoryUsage.rss()) }
  } finally {
    clearInterval(timer)
  }
}

async function listen (server: FastifyInstance): Promise<string> {
  await server.listen({ port: 0, host: '127.0.0.1' })
  return `http://127.0.0.1:${(server.server.address() as AddressInfo).port}`
}

/** Times `runs` POSTs of `body` (after one warm-up) and checks each answer. */
async function timeSends (url: string, headers: Record<string, string>, body: (run: number) => string, runs = RUNS): Promise<number[]> {
  const times: number[] = []
  for (let run = 0; run <= runs; run++) {
    const started = performance.now()
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: body(run) })
    const json = await res.json() as { count?: number }
    const elapsed = performance.now() - started
    if (res.status !== 200 || json.count !== RECIPIENTS) throw new Error(`send answered ${res.status}: ${JSON.stringify(json).slice(0, 300)}`)
    if (run > 0) times.push(elapsed)
  }
  return times
}

const recipientIds = (prefix: string) => Array.from({ length: RECIPIENTS }, (_, i) => `${prefix}${i + 1}`)

async function bare (): Promise<Phase> {
  const server = Fastify({ bodyLimit: BODY_LIMIT })
  server.post('/bulk', {
    schema: {
      body: Type.Object({ recipientIds: Type.Array(Type.String()), content: Type.String() }),
      response: { 200: SendResponseSchema }
    }
  }, async (request) => {
    const { recipientIds } = request.body as { recipientIds: string[] }
    return { success: true, count: recipientIds.length, messages: recipientIds.map(recipientId => ({ id: randomUUID(), recipientId })) }
  })
  const base = await listen(server)
  try {
    const ids = recipientIds('bare_')
    return await sampleRss(() => timeSends(`${base}/bulk`, {}, run => JSON.stringify({ recipientIds: ids, content: `bare ${run}` })))
  } finally {
    await server.close()
  }
}

async function gatehouse (backend: StoreBackend): Promise<Phase> {
  const config = { ...loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'warn', JWT_SECRET: randomUUID() + randomUUID(), RATE_LIMIT_MAX: '1000000', MAX_RECIPIENTS: String(Math.max(RECIPIENTS, 10_000)), BODY_LIMIT: String(BODY_LIMIT) }), store: backend }
  let driver: RpcDriver & { sql: SqlAccess }
  if (backend.kind === 'postgres') {
    driver = createPostgresDriver(backend.url, { timeoutMs: 30_000 })
    await migrate(driver.sql)
  } else {
    driver = await createEmbeddedDriver({ dataDir: null, timeoutMs: 30_000 })
  }
  const server = Fastify(serverOptions(config))
  await server.register(app, { config, driver })
  const base = await listen(server)

  const organization = `bench_${randomUUID()}`
  const prefix = `${organization}_user_`
  const sender = await server.store.upsertUser({ id: `${organization}_sender`, organization_id: organization, name: 'bench sender' })
  if (!sender) throw new Error('could not create the sender')
  const tokenId = randomUUID()
  await server.store.createApiToken({ id: tokenId, userId: sender.id, createdBy: null, name: 'bench', expiresAt: null })
  const authorization = `Bearer ${server.tokens.issueApi(tokenId, sender.id, null)}`
  await driver.sql.query('insert into users (id, organization_id) select $1 || g, $2 from generate_series(1, $3::int) g', [prefix, organization, RECIPIENTS])

  try {
    const ids = recipientIds(prefix)
    return await sampleRss(() => timeSends(`${base}/api/messages/send-bulk`, { authorization }, run => JSON.stringify({ recipientIds: ids, content: `bench ${run}` })))
  } finally {
    if (backend.kind === 'postgres') {
      await driver.sql.query('delete from message_bodies where sender_id = $1', [sender.id])
      await driver.sql.query('delete from idempotency_keys where caller_id = $1', [sender.id])
      await driver.sql.query('delete from users where organization_id = $1', [organization])
    }
    await server.close()
  }
}

function report (name: string, { times, start, peak }: Phase, baseline?: number) {
  const m = median(times)
  const ratio = baseline ? `, ${(m / baseline).toFixed(1)}x bare` : ''
  console.log(`${name.padEnd(26)} median ${m.toFixed(0).padStart(5)} ms (min ${Math.min(...times).toFixed(0)}, max ${Math.max(...times).toFixed(0)}${ratio})` +
    `  RSS ready ${mib(start)}, peak while sending ${mib(peak)}`)
  return m
}

/** A backend that refuses the send (a 503 past the store's timeout, say) is reported as such; the others still run. */
async function measured (name: string, backend: StoreBackend, baseline: number) {
  try {
    report(name, await gatehouse(backend), baseline)
  } catch (err) {
    console.log(`${name.padEnd(26)} failed: ${(err as Error).message}`)
    process.exitCode = 1
  }
}

console.log(`POST /api/messages/send-bulk to ${RECIPIENTS} recipients, node ${process.version}, median of ${RUNS} runs after one warm-up`)
const baseMedian = report('bare Fastify route', await bare())
// RSS is this process's: the embedded store runs in a process of its own.
if (process.env.DATABASE_URL) await measured('gatehouse, Postgres', { kind: 'postgres', url: process.env.DATABASE_URL }, baseMedian)
await measured('gatehouse, embedded store', { kind: 'pglite', dataDir: null }, baseMedian)
console.log(`process peak RSS ${mib(peakRss())}`)
