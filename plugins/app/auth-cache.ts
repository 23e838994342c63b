import type { FastifyBaseLogger } from 'fastify'
import type { User } from '../../schemas/users.js'
import type { ApiToken } from '../../schemas/tokens.js'
import type { StoreChange } from './supabase/store.js'
import { channels, type RedisConnections } from './redis.js'
import { ExpiringMap } from '../../lib/expiring-map.js'

export type ApiTokenRecord = { token: ApiToken, user: User | null }

/** Entries per map at most; the oldest go first. */
const MAX_ENTRIES = 50_000

/**
 * Verified user and API-token state, kept for `ttlMs` so authenticated requests
 * need no store round trip. Forgotten on every change made through the store
 * (here, and in other processes through Redis); while those changes could be
 * missed (subscription down) nothing is served from the cache.
 */
export class AuthCache {
  private readonly users = new ExpiringMap<string, User>(MAX_ENTRIES)
  private readonly tokens = new ExpiringMap<string, ApiTokenRecord>(MAX_ENTRIES)
  /** Bumped by every invalidation: a load that began before one is not kept. */
  private generation = 0
  enabled: boolean

  constructor (private readonly ttlMs: number, enabled = true) {
    this.enabled = enabled && ttlMs > 0
  }

  user (id: string, load: () => Promise<User | null>): Promise<User | null> {
    return this.through(this.users, id, load)
  }

  /** An API token's record; loading it also marks the token used, so last_used_at is written at most once per ttl. */
  apiToken (id: string, load: () => Promise<ApiTokenRecord | null>): Promise<ApiTokenRecord | null> {
    return this.through(this.tokens, id, load)
  }

  invalidate (change: StoreChange): void {
    this.generation++
    for (const id of change.userIds) this.users.delete(id)
    for (const id of change.tokenIds) this.tokens.delete(id)
    if (change.userIds.length > 0) this.tokens.deleteWhere(record => record.user !== null && change.userIds.includes(record.user.id))
  }

  clear (): void {
    this.generation++
    this.users.clear()
    this.tokens.clear()
  }

  private async through<T> (map: ExpiringMap<string, T>, key: string, load: () => Promise<T | null>): Promise<T | null> {
    const now = Date.now()
    const hit = this.enabled ? map.get(key, now) : undefined
    if (hit !== undefined) return hit
    const generation = this.generation
    const value = await load()
    if (value !== null && this.enabled && generation === this.generation) map.set(key, value, now + this.ttlMs)
    return value
  }
}

/**
 * Shares invalidations through Redis: every store change is published on
 * `<prefix>auth`, and every process forgets what it hears. Until the
 * subscription is in place (and whenever it is lost) the cache is off.
 */
export function shareInvalidations (cache: AuthCache, redis: RedisConnections, log: FastifyBaseLogger) {
  const channel = channels(redis.prefix).auth
  const { subscriber, commands } = redis
  cache.enabled = false
  subscriber.on('message', (from: string, text: string) => {
    if (from !== channel) return
    try {
      cache.invalidate(JSON.parse(text))
    } catch (err) {
      log.warn({ err }, 'unreadable invalidation ignored')
      cache.clear()
    }
  })
  const subscribe = () => {
    subscriber.subscribe(channel).then(() => {
      cache.clear()
      cache.enabled = true
    }, err => log.warn({ err }, 'auth invalidation subscription failed; retrying on the next connection'))
  }
  subscriber.on('ready', subscribe)
  if (subscriber.status === 'ready') subscribe()
  subscriber.on('close', () => {
    cache.enabled = false
    cache.clear()
  })
  return {
    publish (change: StoreChange) {
      commands.publish(channel, JSON.stringify(change)).catch(err => {
        // Other processes whose subscription is down do not cache; those still subscribed keep entries for at most the ttl.
        log.warn({ err }, 'invalidation not published to other processes')
      })
    }
  }
}
