import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { ApiError } from '../../lib/errors.js'
import { errors } from '../../schemas/common.js'

const HealthSchema = Type.Object({ status: Type.Literal('ok') }, { title: 'Health', description: 'The process is alive' })
const ReadySchema = Type.Object({
  status: Type.Literal('ready'),
  checks: Type.Record(Type.String(), Type.Literal('ok'))
}, { title: 'Ready', description: 'Every dependency answers and the process is not draining' })

/**
 * Liveness and readiness, for load balancers and orchestrators. Probes come every
 * few seconds from every balancer: they are not logged per request (a failing
 * /ready still is, at error level, by the error handler).
 */
const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  let draining = false
  fastify.addHook('preClose', async () => { draining = true })

  fastify.get('/health', {
    config: { rateLimit: false },
    logLevel: 'warn',
    schema: { tags: ['health'], summary: 'The process is alive', response: { 200: HealthSchema } }
  }, async () => ({ status: 'ok' as const }))

  fastify.get('/ready', {
    config: { rateLimit: false },
    logLevel: 'warn',
    schema: {
      tags: ['health'],
      summary: 'The store (and Redis, when configured) answer and the process is not draining',
      response: { 200: ReadySchema, ...errors(503) }
    }
  }, async () => {
    if (draining) throw new ApiError(503, 'DRAINING', 'Server is shutting down')
    const { store, redis } = fastify
    await Promise.all([store.ping(), redis?.ping()])
    const checks: Record<string, 'ok'> = { store: 'ok' }
    if (redis) checks.redis = 'ok'
    return { status: 'ready' as const, checks }
  })
}
export default routes
