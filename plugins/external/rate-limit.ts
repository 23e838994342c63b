import fp from 'fastify-plugin'
import fastifyRateLimit from '@fastify/rate-limit'
import { ApiError } from '../../lib/errors.js'

const limited = (after: string) => new ApiError(429, 'RATE_LIMITED', `Rate limit exceeded, retry in ${after}`)

/**
 * A per-client budget of requests a minute; routes may add a tighter one on top in
 * `config.rateLimit`, or opt out with `false` (health checks).
 */
export default fp(async function rateLimit (fastify) {
  await fastify.register(fastifyRateLimit, {
    global: false,
    max: fastify.config.RATE_LIMIT_MAX,
    timeWindow: '1 minute',
    // With Redis every process counts against one budget. While Redis is down the
    // limit fails open (requests pass, unlimited) rather than refusing every client.
    ...(fastify.redis ? { redis: fastify.redis.commands, nameSpace: `${fastify.redis.prefix}rate:`, skipOnError: true } : {}),
    errorResponseBuilder: (_request, context) => limited(context.after)
  })
  // The plugin's own global hook runs after a route's onRequest hooks, so a failed
  // authentication would never count: a root hook counts every request first,
  // unknown routes included. It uses createRateLimit(), which does not mark the
  // request as counted, so a route's own limit still applies after it.
  const check = fastify.createRateLimit()
  fastify.addHook('onRequest', async function globalRateLimit (request, reply) {
    if (request.routeOptions.config?.rateLimit === false) return
    const limit = await check(request)
    if (limit.isAllowed) return
    reply.header('x-ratelimit-limit', limit.max)
    reply.header('x-ratelimit-remaining', limit.remaining)
    reply.header('x-ratelimit-reset', limit.ttlInSeconds)
    if (limit.isExceeded) {
      reply.header('retry-after', limit.ttlInSeconds)
      throw limited(`${limit.ttlInSeconds} seconds`)
    }
  })
}, { name: 'rate-limit', dependencies: ['env'] })
