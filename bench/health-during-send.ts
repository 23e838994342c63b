/**
 * Worst GET /health latency while POST /api/messages/send-bulk to 10,000 offline
 * recipients runs, on the embedded store and, when DATABASE_URL is set, on that
 * Postgres in the same run. /health does no I/O, so its latency is how long the
 * event loop (every socket, heartbeat and request) waits on the store's work.
 *
 *   npm run bench:health-during-send -- [runs=5]
 *   DATABASE_URL=postgres://… npm run bench:health-during-send
 *
 * On Postgres it adds a uniquely named organization of 10,001 users and removes
 * them (and their messages) at the end.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import { randomUUID } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import app from '../app.js'
import { loadConfig, type StoreBackend } from '../lib/config.js'
import { serverOptions } from '../lib/server-options.js'
import type { RpcDriver, SqlAccess } from '../plugins/app/supabase/driver.js'
import { createEmbeddedDriver } from '../plugins/app/supabase/drivers/embedded.js'
import { createPostgresDriver } from '../plugins/app/supabase/drivers/postgres.js'
import { migrate } from '../plugins/app/supabase/migrate.js'

const RECIPIENTS = 10_000
const RUNS = Math.max(1, Number(process.argv[2] ?? 5))
const POLL_MS = 10

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

interface Run { send: number, worstHealth: number, polls: number }

/** Polls /health back to back (POLL_MS apart) until `done` settles; the slowest answer. */
async function pollHealth (base: string, done: Promise<unknown>): Promise<{ worst: number, polls: number }> {
  const state = { finished: false }
  done.finally(() => { state.finished = true }).catch(() => {})
  let worst = 0
  let polls = 0
  while (!state.finished) {
    const started = performance.now()
    const res = await fetch(`${base}/health`)
    await res.arrayBuffer()
    worst = Math.max(worst, performance.now() - started)
    polls++
    await new Promise(resolve => setTimeout(resolve, POLL_MS))
  }
  return { worst, polls }
}

async function measure (backend: StoreBackend): Promise<Run[]> {
  const config = { ...loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'warn', JWT_SECRET: randomUUID() + randomUUID(), RATE_LIMIT_MAX: '1000000', STORE_TIMEOUT_MS: '30000' }), store: backend }
  let driver: RpcDriver & { sql: SqlAccess }
  let dataDir: string | undefined
  if (backend.kind === 'postgres') {
    driver = createPostgresDriver(backend.url, { timeoutMs: 30_000 })
    await migrate(driver.sql)
  } else {
    dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-bench-'))
    driver = await createEmbeddedDriver({ dataDir, timeoutMs: 30_000 })
  }
  const server: FastifyInstance = Fastify(serverOptions(config))
  await server.register(app, { config, driver })
  await server.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(server.server.address() as AddressInfo).port}`

  const organization = `bench_${randomUUID()}`
  const prefix = `${organization}_user_`
  const sender = await server.store.upsertUser({ id: `${organization}_sender`, organization_id: organization, name: 'bench sender' })
  if (!sender) throw new Error('could not create the sender')
  const tokenId = randomUUID()
  await server.store.createApiToken({ id: tokenId, userId: sender.id, createdBy: null, name: 'bench', expiresAt: null })
  const authorization = `Bearer ${server.tokens.issueApi(tokenId, sender.id, null)}`
  await driver.sql.query('insert into users (id, organization_id) select $1 || g, $2 from generate_series(1, $3::int) g', [prefix, organization, RECIPIENTS])
  const ids = Array.from({ length: RECIPIENTS }, (_, i) => `${prefix}${i + 1}`)

  const runs: Run[] = []
  try {
    for (let run = 0; run <= RUNS; run++) {
      const started = performance.now()
      const sent = fetch(`${base}/api/messages/send-bulk`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization },
        body: JSON.stringify({ recipientIds: ids, content: `bench ${run}` })
      }).then(async res => {
        const json = await res.json() as { count?: number }
        if (res.status !== 200 || json.count !== RECIPIENTS) throw new Error(`send answered ${res.status}: ${JSON.stringify(json).slice(0, 300)}`)
        return performance.now() - started
      })
      const [send, health] = await Promise.all([sent, pollHealth(base, sent)])
      // The first run warms up.
      if (run > 0) runs.push({ send, worstHealth: health.worst, polls: health.polls })
    }
  } finally {
    if (backend.kind === 'postgres') {
      await driver.sql.query('delete from message_bodies where sender_id = $1', [sender.id])
      await driver.sql.query('delete from idempotency_keys where caller_id = $1', [sender.id])
      await driver.sql.query('delete from users where organization_id = $1', [organization])
    }
    await server.close()
    if (dataDir) await rm(dataDir, { recursive: true, force: true })
  }
  return runs
}

function report (name: string, runs: Run[], reference?: number): number {
  const worst = median(runs.map(r => r.worstHealth))
  const ratio = reference ? ` (${(worst / reference).toFixed(1)}x Postgres)` : ''
  console.log(`${name.padEnd(18)} /health worst ${worst.toFixed(0).padStart(4)} ms${ratio}, per run [${runs.map(r => r.worstHealth.toFixed(0)).join(', ')}]` +
    `; send median ${median(runs.map(r => r.send)).toFixed(0)} ms; ${median(runs.map(r => r.polls))} polls per send`)
  return worst
}

console.log(`GET /health every ${POLL_MS} ms during POST /api/messages/send-bulk to ${RECIPIENTS} recipients, node ${process.version}, median of ${RUNS} runs after one warm-up`)
const reference = process.env.DATABASE_URL ? report('Postgres', await measure({ kind: 'postgres', url: process.env.DATABASE_URL })) : undefined
report('embedded store', await measure({ kind: 'pglite', dataDir: null }), reference)
