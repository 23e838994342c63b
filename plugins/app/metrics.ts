import fp from 'fastify-plugin'
import { createHash, timingSafeEqual } from 'node:crypto'
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { unauthorized } from '../../lib/errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Prometheus registry of this instance; plugins add their own metrics to it. */
    metrics: Registry
  }
}

const digest = (value: string) => createHash('sha256').update(value).digest()

/** True when the request carries `Authorization: Bearer <expected>` (compared in constant time). */
function hasBearer (request: FastifyRequest, expected: Buffer): boolean {
  const match = /^Bearer (.+)$/.exec(request.headers.authorization ?? '')
  return match !== null && timingSafeEqual(digest(match[1]), expected)
}

/** Prometheus metrics at GET /metrics (METRICS=off: not served; METRICS_TOKEN: behind that bearer token). */
export default fp(async function metrics (fastify: FastifyInstance) {
  // One registry per instance, so several apps in a process (tests) do not collide.
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'gatehouse_' })

  const duration = new Histogram({
    name: 'gatehouse_http_request_duration_seconds',
    help: 'HTTP request duration by route and status',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry]
  })
  const errors = new Counter({
    name: 'gatehouse_http_errors_total',
    help: 'HTTP responses with status >= 500',
    labelNames: ['route'],
    registers: [registry]
  })

  fastify.decorate('metrics', registry)
  fastify.addHook('onResponse', function observe (request, reply, done) {
    // The route pattern, never the raw URL: URLs hold ids and query tokens.
    const route = request.routeOptions.url ?? 'unmatched'
    duration.observe({ method: request.method, route, status: reply.statusCode }, reply.elapsedTime / 1000)
    if (reply.statusCode >= 500) errors.inc({ route })
    done()
  })

  if (fastify.config.METRICS === 'off') return
  const token = fastify.config.METRICS_TOKEN === undefined ? null : digest(fastify.config.METRICS_TOKEN)
  // Scraped every few seconds: not logged per request, as the probes.
  fastify.get('/metrics', { schema: { hide: true }, logLevel: 'warn' }, async (request, reply) => {
    if (token !== null && !hasBearer(request, token)) throw unauthorized()
    reply.type(registry.contentType)
    return await registry.metrics()
  })
}, { name: 'metrics', dependencies: ['env'] })
