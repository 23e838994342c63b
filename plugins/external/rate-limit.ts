import { createRequire } from 'node:module'
import fp from 'fastify-plugin'
import fastifyRateLimit, { normalizeIP, type FastifyRateLimitStore, type FastifyRateLimitStoreCtor, type RateLimitOptions } from '@fastify/rate-limit'
import type { Redis } from 'ioredis'
import { ApiError } from '../../lib/errors.js'

const limited = (after: string) => new ApiError(429, 'RATE_LIMITED', `Rate limit exceeded, retry in ${after}`)

type RedisStoreCtor = new (continueExceeding: boolean, exponentialBackoff: boolean, redis: Redis, key: string) => FastifyRateLimitStore
type LocalStoreCtor = new (continueExceeding: boolean, exponentialBackoff: boolean, size: number) => FastifyRateLimitStore
// The plugin's own stores (its LRU, its Redis counting script), which it does not export by name.
const require = createRequire(import.meta.url)
const RedisStore = require('@fastify/rate-limit/store/RedisStore.js') as RedisStoreCtor
const LocalStore = require('@fastify/rate-limit/store/LocalStore.js') as LocalStoreCtor

const MINUTE = 60_000
/** Addresses counted at once in one process without Redis (the plugin's own default). */
const LOCAL_ADDRESSES = 5000

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
  // unknown routes included, straight in the plugin's store. Its createRateLimit()
  // would do the same through three promises a request, which cost every request
  // more than the counting itself. A route's own limit still applies after it.
  const max = fastify.config.RATE_LIMIT_MAX
  const budget = fastify.redis
    ? new RedisStore(false, false, fastify.redis.commands, `${fastify.redis.prefix}rate:`)
    : new LocalStore(false, false, LOCAL_ADDRESSES)
  fastify.addHook('onRequest', function globalRateLimit (request, reply, done) {
    if (request.routeOptions.config?.rateLimit === false) return done()
    budget.incr(normalizeIP(request.ip), (err, counted) => {
      // With Redis down the limit fails open, as the plugin's skipOnError.
      if (err || counted === undefined) return done()
      const reset = Math.ceil(counted.ttl / 1000)
      reply.header('x-ratelimit-limit', max)
      reply.header('x-ratelimit-remaining', Math.max(0, max - counted.current))
      reply.header('x-ratelimit-reset', reset)
      if (counted.current <= max) return done()
      reply.header('retry-after', reset)
      done(limited(`${reset} seconds`))
    }, MINUTE, max)
  })
}, { name: 'rate-limit', dependencies: ['env'] })
