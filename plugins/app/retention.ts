import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { PruneOutcome, PruneSettings, Store } from './supabase/store.js'

/** Batches per wake-up at most, so one process never prunes without pause. */
const MAX_BATCHES = 1000
/** How often a process asks whether a run is due: runs follow each other by about PRUNE_INTERVAL_MS plus this. */
const CHECK_EVERY_MS = 60_000

export interface PruneTotals { batches: number, acked: number, unacked: number, userMessages: number, users: number, bodies: number, idempotencyKeys: number }

declare module 'fastify' {
  interface FastifyInstance {
    /** Prunes now, batch after batch, while there is more and no other process is at it. */
    prune (): Promise<PruneTotals>
  }
}

export const pruneSettings = (config: FastifyInstance['config']): PruneSettings => ({
  ackedTtl: config.ACKED_MESSAGE_TTL,
  unackedTtl: config.UNACKED_MESSAGE_TTL,
  idempotencyTtl: config.IDEMPOTENCY_TTL,
  batch: config.PRUNE_BATCH,
  everyMs: config.PRUNE_INTERVAL_MS
})

/**
 * Batches until the run is done, another process holds it, or a batch changed nothing
 * (its rows are all held by others: a later run takes them). `stop` ends it early.
 */
export async function pruneRun (store: Store, settings: PruneSettings, stop: () => boolean = () => false): Promise<PruneTotals> {
  const totals: PruneTotals = { batches: 0, acked: 0, unacked: 0, userMessages: 0, users: 0, bodies: 0, idempotencyKeys: 0 }
  while (totals.batches < MAX_BATCHES && !stop()) {
    const outcome: PruneOutcome = await store.prune(settings)
    if (!outcome.ran) break
    totals.batches++
    let changed = 0
    for (const key of ['acked', 'unacked', 'userMessages', 'users', 'bodies', 'idempotencyKeys'] as const) {
      totals[key] += outcome[key]
      changed += outcome[key]
    }
    if (!outcome.more || changed === 0) break
  }
  return totals
}

/**
 * Retention: acknowledged and unacknowledged messages past their lifetimes, the inboxes
 * of deleted users, orphaned bodies and expired idempotency keys are deleted in bounded
 * batches. Every process checks; the store lets one at a time prune and skips runs that
 * are not due, so the work is done once however many processes share the database.
 */
export default fp(async function retention (fastify: FastifyInstance) {
  const { store, log } = fastify
  const settings = pruneSettings(fastify.config)
  let closing = false
  let running: Promise<PruneTotals> | null = null

  async function prune (): Promise<PruneTotals> {
    running ??= pruneRun(store, settings, () => closing).finally(() => { running = null })
    return await running
  }

  const timer = setInterval(() => {
    prune()
      .then(totals => {
        const { batches, ...deleted } = totals
        if (Object.values(deleted).some(n => n > 0)) log.info({ batches, deleted }, 'pruned expired data')
      })
      .catch(err => log.warn({ err }, 'pruning failed; the next check retries'))
  }, Math.min(settings.everyMs, CHECK_EVERY_MS))
  timer.unref()

  fastify.decorate('prune', prune)
  // Before the store closes: the batch in flight (bounded by the store timeout) finishes, no other starts.
  fastify.addHook('preClose', async () => {
    closing = true
    clearInterval(timer)
    await running?.catch(() => {})
  })
}, { name: 'retention', dependencies: ['supabase'] })
