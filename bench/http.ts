/**
 * HTTP throughput of the token path against a bare Fastify route, in one run.
 *
 *   npm run bench:http [-- --duration 5 --runs 5 --connections 50 --only /health]
 *
 * AUTH_CACHE_TTL_MS=0 measures the path without the authentication cache.
 * The app logs as a deployment does (LOG_LEVEL, default info, with redaction),
 * into /dev/null so the output stays readable; the bare route logs nothing.
 * Reports requests/second medians and each route's ratio to the bare route, so
 * the figure means something on a shared, noisy machine; and the same ratio by
 * CPU time per request, which the other work on a shared machine hardly moves
 * (the store's own CPU, in Postgres, is not counted).
 */
import { parseArgs } from 'node:util'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import autocannon from 'autocannon'
import Fastify from 'fastify'
import pino from 'pino'
import app from '../app.js'
import { loadConfig } from '../lib/config.js'
import { serverOptions } from '../lib/server-options.js'

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    runs: { type: 'string', default: '5' },
    connections: { type: 'string', default: '50' },
    // Measures only the routes whose name contains this (the bare route always), e.g. for a profile.
    only: { type: 'string', default: '' }
  }
})
const duration = Number(values.duration)
const runs = Number(values.runs)
const connections = Number(values.connections)

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

interface Sample { rps: number, cpuPerRequest: number }

/**
 * Requests/second, and this process's CPU time per request (server and load
 * generator alike, µs). On a machine shared with other work throughput follows
 * the load of the moment; CPU time per request hardly does, and the ratio of two
 * of them is the throughput ratio the routes would have on a core of their own.
 */
async function measure (url: string, headers: Record<string, string> = {}, body?: string): Promise<Sample> {
  const before = process.cpuUsage()
  const result = await autocannon({ url, headers, duration, connections, ...(body === undefined ? {} : { method: 'POST', body }) })
  const used = process.cpuUsage(before)
  if (result.non2xx > 0 || result.errors > 0) throw new Error(`${url}: ${result.non2xx} non-2xx, ${result.errors} errors`)
  return { rps: result.requests.average, cpuPerRequest: (used.user + used.system) / result.requests.total }
}

const bare = Fastify({ logger: false })
bare.get('/', async () => ({ token: 'x'.repeat(200), expires_in: 60 }))
await bare.listen({ port: 0, host: '127.0.0.1' })

// The embedded store by default; DATABASE_URL (already migrated) benchmarks Postgres instead.
const config = loadConfig({
  ...(process.env.LOG_LEVEL ? { LOG_LEVEL: process.env.LOG_LEVEL } : {}),
  JWT_SECRET: 'bench-secret-bench-secret-bench-secret',
  RATE_LIMIT_MAX: '100000000',
  ...(process.env.AUTH_CACHE_TTL_MS ? { AUTH_CACHE_TTL_MS: process.env.AUTH_CACHE_TTL_MS } : {}),
  DATA_DIR: mkdtempSync(join(tmpdir(), 'gatehouse-bench-')),
  ...(process.env.DATABASE_URL ? { DATABASE_URL: process.env.DATABASE_URL } : {})
})
const options = serverOptions(config)
const server = Fastify({ ...options, logger: { ...options.logger as object, stream: pino.destination('/dev/null') } })
await server.register(app, { config })
await server.listen({ port: 0, host: '127.0.0.1' })
const user = await server.store.upsertUser({ id: 'bench-user', email: 'bench@example.com', name: 'Bench' })
const access = server.tokens.issueAccess(user!).token
const apiId = crypto.randomUUID()
await server.store.createApiToken({ id: apiId, userId: user!.id, createdBy: null, name: 'bench', expiresAt: null })
const api = server.tokens.issueApi(apiId, user!.id, null)
// Introspection needs an administrator's token; a token without a send quota is answered from the authentication cache.
const admin = await server.store.upsertUser({ id: 'bench-admin', email: 'admin@example.com', name: 'Bench admin', role: 'admin' })
const adminApiId = crypto.randomUUID()
await server.store.createApiToken({ id: adminApiId, userId: admin!.id, createdBy: null, name: 'bench-admin', expiresAt: null })
const adminApi = server.tokens.issueApi(adminApiId, admin!.id, null)

const bareUrl = `http://127.0.0.1:${(bare.server.address() as { port: number }).port}/`
const base = `http://127.0.0.1:${(server.server.address() as { port: number }).port}`
const allRoutes: Array<[string, string, Record<string, string>, string?]> = [
  ['GET /health (full app, no auth)', `${base}/health`, {}],
  ['GET /websocket-token/ (verify + user lookup + sign)', `${base}/websocket-token/`, { authorization: `Bearer ${access}` }],
  ['GET /api/templates (API token + one store query for the list)', `${base}/api/templates`, { authorization: `Bearer ${api}` }],
  ['POST /api/tokens/introspect (API token; the token introspected, without a quota, from the auth cache)', `${base}/api/tokens/introspect`,
    { authorization: `Bearer ${adminApi}`, 'content-type': 'application/json' }, JSON.stringify({ token: api })]
]
const routes = allRoutes.filter(([name]) => name.includes(values.only))

console.log(`backend=${server.store.backend} LOG_LEVEL=${config.LOG_LEVEL} AUTH_CACHE_TTL_MS=${config.AUTH_CACHE_TTL_MS} duration=${duration}s connections=${connections} runs=${runs}`)
const samples: Record<string, Sample[]> = { bare: [] }
for (const [name] of routes) samples[name] = []
for (let run = 0; run < runs; run++) {
  // Interleave so drift on a shared machine hits every route alike.
  samples.bare.push(await measure(bareUrl))
  for (const [name, url, headers, body] of routes) samples[name].push(await measure(url, headers, body))
}
const bareRps = median(samples.bare.map(s => s.rps))
const bareCpu = median(samples.bare.map(s => s.cpuPerRequest))
console.log(`bare Fastify route: ${Math.round(bareRps)} req/s, ${bareCpu.toFixed(0)} µs CPU/request (medians)`)
for (const [name] of routes) {
  const rps = median(samples[name].map(s => s.rps))
  const cpu = median(samples[name].map(s => s.cpuPerRequest))
  console.log(`${name}: ${Math.round(rps)} req/s, ${(rps / bareRps).toFixed(2)}x bare; ${cpu.toFixed(0)} µs CPU/request, ${(bareCpu / cpu).toFixed(2)}x bare by CPU (this process only)`)
}
await server.close()
await bare.close()
