import fp from 'fastify-plugin'
import fastifyRateLimit from '@fastify/rate-limit'
import { ApiError } from '../../lib/errors.js'

/**
 * A per-client budget of requests a minute; routes may set a tighter one in
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
    errorResponseBuilder: (_request, context) =>
      new ApiError(context.statusCode, 'RATE_LIMITED', `Rate limit exceeded, retry in ${context.after}`)
  })
  // The plugin's own global hook runs after a route's onRequest hooks, so a failed
  // authentication would never count. A root hook counts every request first,
  // unknown routes included.
  const limit = fastify.rateLimit()
  fastify.addHook('onRequest', async function globalRateLimit (request, reply) {
    if (request.routeOptions.config?.rateLimit === false) return
    await limit.call(this, request, reply)
  })
}, { name: 'rate-limit', dependencies: ['env'] })
