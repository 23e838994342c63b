import fp from 'fastify-plugin'
import fastifyRateLimit from '@fastify/rate-limit'
import { ApiError } from '../../lib/errors.js'

/** A per-client budget of requests a minute; routes may set a tighter one. */
export default fp(async function rateLimit (fastify) {
  await fastify.register(fastifyRateLimit, {
    max: fastify.config.RATE_LIMIT_MAX,
    timeWindow: '1 minute',
    errorResponseBuilder: (_request, context) =>
      new ApiError(context.statusCode, 'RATE_LIMITED', `Rate limit exceeded, retry in ${context.after}`)
  })
}, { name: 'rate-limit', dependencies: ['env'] })
