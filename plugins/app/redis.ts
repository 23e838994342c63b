import fp from 'fastify-plugin'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import type { Redis } from 'ioredis'
import { DependencyUnavailableError } from '../../lib/errors.js'

/**
 * The two connections a process keeps to Redis, whatever the number of sockets:
 * one for commands and publications, one held by the hub's subscription.
 */
export interface RedisConnections {
  /** Commands fail at once while disconnected (no offline queue), or after REDIS_TIMEOUT_MS. */
  readonly commands: Redis
  readonly subscriber: Redis
  /** Prefix of every key and channel. */
  readonly prefix: string
  /** Resolves when both connections answer; a 503 error otherwise. */
  ping (): Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Null without REDIS_URL: one process, everything in memory. */
    redis: RedisConnections | null
  }
}

/** The pub/sub channels: hub events (deliveries, closes) and authentication-cache invalidations. */
export const channels = (prefix: string) => ({ hub: `${prefix}hub`, auth: `${prefix}auth` })

/**
 * Publishes from a process that keeps no connection (the CLI), on a connection
 * of its own that fails rather than waits when Redis is down.
 */
export async function publishOnce (options: { url: string, timeoutMs: number }, messages: Array<[channel: string, message: unknown]>): Promise<void> {
  const { Redis } = await import('ioredis')
  const redis = new Redis(options.url, { connectTimeout: options.timeoutMs, commandTimeout: options.timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null })
  redis.on('error', () => {})
  try {
    for (const [channel, message] of messages) await redis.publish(channel, JSON.stringify(message))
  } finally {
    redis.disconnect()
  }
}

export interface RedisOptions { url: string, prefix: string, timeoutMs: number, log: FastifyBaseLogger }

/**
 * Connects lazily and reconnects forever: a process started while Redis is down recovers by itself.
 * ioredis is loaded here, so a process without REDIS_URL never loads it.
 */
export async function connectRedis ({ url, prefix, timeoutMs, log }: RedisOptions): Promise<RedisConnections & { close (): Promise<void> }> {
  const { Redis } = await import('ioredis')
  const common = {
    connectTimeout: timeoutMs,
    // Back off to one attempt a second: recovery within a second of Redis returning.
    retryStrategy: (attempt: number) => Math.min(attempt * 100, 1000),
    maxRetriesPerRequest: 1
  }
  const commands = new Redis(url, { ...common, enableOfflineQueue: false, commandTimeout: timeoutMs })
  // The hub subscribes again itself once the connection is back, so it knows when to catch up.
  const subscriber = new Redis(url, { ...common, autoResubscribe: false })
  for (const [role, connection] of [['commands', commands], ['subscriber', subscriber]] as const) {
    let down = false
    // Without an error listener ioredis prints every failed reconnect; one line per outage is enough.
    connection.on('error', err => {
      if (!down) log.warn({ err, redis: role }, 'Redis connection lost; retrying')
      down = true
    })
    connection.on('ready', () => {
      if (down) log.info({ redis: role }, 'Redis connection back')
      down = false
    })
  }

  async function answer (connection: Redis) {
    if (connection.status !== 'ready') throw new DependencyUnavailableError('Redis')
    const signal = AbortSignal.timeout(timeoutMs)
    // A subscribed connection answers PING too, with a different reply shape.
    await Promise.race([
      connection.ping(),
      new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(new DependencyUnavailableError('Redis')), { once: true }))
    ])
  }

  return {
    commands,
    subscriber,
    prefix,
    async ping () {
      try {
        await Promise.all([answer(commands), answer(subscriber)])
      } catch (err) {
        throw err instanceof DependencyUnavailableError ? err : new DependencyUnavailableError('Redis', err)
      }
    },
    async close () {
      await Promise.all([commands, subscriber].map(c => c.quit().catch(() => c.disconnect())))
    }
  }
}

/** Redis when REDIS_URL is set (several processes as one service), otherwise null. */
export default fp(async function redis (fastify: FastifyInstance) {
  const { REDIS_URL, REDIS_KEY_PREFIX, REDIS_TIMEOUT_MS } = fastify.config
  if (!REDIS_URL) {
    fastify.decorate('redis', null)
    return
  }
  const connections = await connectRedis({ url: REDIS_URL, prefix: REDIS_KEY_PREFIX, timeoutMs: REDIS_TIMEOUT_MS, log: fastify.log.child({ plugin: 'redis' }) })
  fastify.addHook('onClose', () => connections.close())
  fastify.decorate('redis', connections)
}, { name: 'redis', dependencies: ['env'] })
