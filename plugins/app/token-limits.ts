import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest, preHandlerHookHandler } from 'fastify'
import { ApiError } from '../../lib/errors.js'
import type { LimiterOptions } from '../external/rate-limit.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * A preHandler (after authentication) that answers 429 RATE_LIMITED when the
     * caller's API token has a per-minute send limit and has used it up this minute.
     * Callers without one pass. The token's total quota is taken by the store, with the send.
     */
    limitSends: preHandlerHookHandler
  }
}

const WINDOW_MS = 60_000

/**
 * Per-token send limits, counted by @fastify/rate-limit in its store: Redis when
 * REDIS_URL is set (one count for every process; fails open while Redis is down,
 * like every rate limit here), this process's memory otherwise.
 */
export default fp(async function tokenLimits (fastify: FastifyInstance) {
  const options: LimiterOptions = {
    timeWindow: WINDOW_MS,
    // In Redis: `<REDIS_KEY_PREFIX>rate:token-sends:<token id>`, apart from the per-address budget's keys.
    nameSpace: 'token-sends:',
    // Only called for callers with a token and a limit (below).
    keyGenerator: (request: FastifyRequest) => request.caller!.tokenId!,
    max: (request: FastifyRequest) => request.caller!.sendsPerMinute!
  }
  const check = fastify.createRateLimit(options)

  fastify.decorate('limitSends', async function limitSends (request: FastifyRequest, reply) {
    const perMinute = request.caller?.sendsPerMinute
    if (!perMinute || !request.caller?.tokenId) return
    const limit = await check(request)
    // isAllowed means "on the allow list", which this limiter has none of.
    if (limit.isAllowed) return
    reply.header('x-send-ratelimit-limit', limit.max)
    reply.header('x-send-ratelimit-remaining', limit.remaining)
    reply.header('x-send-ratelimit-reset', limit.ttlInSeconds)
    if (limit.isExceeded) {
      reply.header('retry-after', limit.ttlInSeconds)
      throw new ApiError(429, 'RATE_LIMITED',
        `This token may send ${perMinute} request(s) a minute: retry in ${limit.ttlInSeconds} seconds`,
        { sendsPerMinute: perMinute, retryAfterSeconds: limit.ttlInSeconds })
    }
  })
}, { name: 'token-limits', dependencies: ['auth', 'rate-limit'] })
