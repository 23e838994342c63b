import { createRequire } from 'node:module'
import fp from 'fastify-plugin'
import fastifyRateLimit, { type FastifyRateLimitStore, type FastifyRateLimitStoreCtor, type RateLimitOptions } from '@fastify/rate-limit'
import type { Redis } from 'ioredis'
import { ApiError } from '../../lib/errors.js'

const limited = (after: string) => new ApiError(429, 'RATE_LIMITED', `Rate limit exceeded, retry in ${after}`)

type RedisStoreCtor = new (continueExceeding: boolean, exponentialBackoff: boolean, redis: Redis, key: string) => FastifyRateLimitStore
// The plugin's own Redis store (its counting script), which it does not export by name.
const RedisStore = createRequire(import.meta.url)('@fastify/rate-limit/store/RedisStore.js') as RedisStoreCtor

/** Options of a limiter made with createRateLimit(); `nameSpace` names its keys. */
export type LimiterOptions = NonNullable<Parameters<import('fastify').FastifyInstance['createRateLimit']>[0]> & { nameSpace?: string }
type ChildParams = Pick<RateLimitOptions, 'continueExceeding' | 'exponentialBackoff'> & { nameSpace?: string, routeInfo: { method?: string, url?: string } }

/**
 * The plugin's Redis store under `prefix`, except for naming: the plugin names a
 * limiter's keys after its route (`<prefix>POST/api/dashboard-token/generate-<ip>`),
 * and a createRateLimit() limiter has no route, so its keys read
 * `<prefix>undefinedundefined-…`. Given `nameSpace`, they read `<prefix><nameSpace><key>`.
 */
function namedRedisStore (redis: Redis, prefix: string): FastifyRateLimitStoreCtor {
  // The plugin passes a limiter's merged options here, not the route its types name.
  const child = ((params: ChildParams): FastifyRateLimitStore => {
    const name = params.nameSpace ?? `${params.routeInfo.method}${params.routeInfo.url}-`
    const store = new RedisStore(params.continueExceeding ?? false, params.exponentialBackoff ?? false, redis, `${prefix}${name}`)
    store.child = child
    return store
  }) as unknown as FastifyRateLimitStore['child']
  return function NamedRedisStore (params: ChildParams) {
    const store = new RedisStore(params.continueExceeding ?? false, params.exponentialBackoff ?? false, redis, prefix)
    store.child = child
    return store
  } as unknown as FastifyRateLimitStoreCtor
}

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
    ...(fastify.redis ? { store: namedRedisStore(fastify.redis.commands, `${fastify.redis.prefix}rate:`), skipOnError: true } : {}),
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
