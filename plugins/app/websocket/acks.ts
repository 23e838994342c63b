import type { FastifyBaseLogger } from 'fastify'

interface Waiting { acks: Array<{ recipientId: string, id: string }>, done: () => void }

/**
 * Writes the acks of every socket together: while one write is in flight, the
 * acks that arrive wait and go in the next one. 10,000 clients acking a bulk
 * send cost a handful of statements, not 10,000.
 */
export class AckWriter {
  private queue: Waiting[] = []
  private writing = false
  /** Large sends being stored: acks wait for them (see deferDuring). */
  private readonly sends = new Set<Promise<void>>()

  constructor (
    private readonly store: { ackMany (acks: Array<{ recipientId: string, id: string }>): Promise<number> },
    private readonly log: FastifyBaseLogger,
    /** Acks per statement at most. */
    private readonly maxBatch = 5000
  ) {}

  /** Resolves once the acks are written, or failed (logged: the messages are then replayed later). */
  ack (recipientId: string, ids: string[]): Promise<void> {
    return new Promise(resolve => {
      this.queue.push({ acks: ids.map(id => ({ recipientId, id })), done: resolve })
      if (!this.writing) this.write().catch(err => this.log.error({ err }, 'ack writer failed'))
    })
  }

  /**
   * Acks wait while `work` (a send still storing its later chunks) runs: the
   * recipients of its first chunks ack at once, and those writes would otherwise
   * compete with the send's own for the database. Each write waits only for the
   * sends already running, so acks are delayed, never starved.
   */
  deferDuring (work: Promise<unknown>): void {
    const forget = () => { this.sends.delete(settled) }
    const settled: Promise<void> = work.then(forget, forget)
    this.sends.add(settled)
  }

  private async write (): Promise<void> {
    this.writing = true
    // Let the acks already read from sockets in this turn of the event loop join the first write.
    await new Promise(resolve => setImmediate(resolve))
    while (this.queue.length > 0) {
      const batch: Waiting[] = []
      let size = 0
      while (this.queue.length > 0 && (size === 0 || size + this.queue[0].acks.length <= this.maxBatch)) {
        const next = this.queue.shift() as Waiting
        batch.push(next)
        size += next.acks.length
      }
      if (this.sends.size > 0) await Promise.all([...this.sends])
      try {
        await this.store.ackMany(batch.flatMap(w => w.acks))
      } catch (err) {
        this.log.warn({ err, acks: size }, 'acks not stored; those messages will be replayed')
      }
      for (const waiting of batch) waiting.done()
    }
    this.writing = false
  }
}
