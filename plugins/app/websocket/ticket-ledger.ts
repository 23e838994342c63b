import { DependencyUnavailableError } from '../../../lib/errors.js'
import type { RedisConnections } from '../redis.js'

/**
 * Remembers consumed ws tickets until they expire, so each opens one socket.
 * In one process a Map is enough; across processes the ledger lives in Redis.
 */
export interface TicketLedger {
  /** True the first time a ticket id is seen, false afterwards. */
  consume (jti: string, expiresAtSeconds: number): Promise<boolean>
}

export function memoryTicketLedger (): TicketLedger & { size: number, close (): void } {
  const seen = new Map<string, number>()
  const sweep = setInterval(() => {
    const now = Date.now() / 1000
    for (const [jti, exp] of seen) if (exp < now) seen.delete(jti)
  }, 30_000)
  sweep.unref()
  return {
    async consume (jti, exp) {
      if (seen.has(jti)) return false
      seen.set(jti, exp)
      return true
    },
    get size () { return seen.size },
    close () { clearInterval(sweep) }
  }
}

/**
 * The ledger of every process in Redis: `SET NX` with the ticket's own expiry is
 * atomic, so one ticket opens one socket whichever processes it is shown to.
 * Fails closed: while Redis is unreachable a ticket is refused (503), never
 * accepted without the check.
 */
export function redisTicketLedger (redis: RedisConnections): TicketLedger {
  return {
    async consume (jti, exp) {
      const ttl = Math.max(1, Math.ceil(exp - Date.now() / 1000))
      let result: string | null
      try {
        result = await redis.commands.set(`${redis.prefix}ticket:${jti}`, '1', 'EX', ttl, 'NX')
      } catch (err) {
        throw new DependencyUnavailableError('Redis', err)
      }
      return result === 'OK'
    }
  }
}
