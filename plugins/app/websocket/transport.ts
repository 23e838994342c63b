import type { MessageBatch } from './index.js'

/**
 * What travels between processes: a stored send to deliver, or a user to
 * disconnect. `resync` is never published: a transport raises it itself when
 * events may have been missed, and every local socket then catches up from the store.
 */
export type HubEvent =
  | { type: 'batch', batch: MessageBatch }
  | { type: 'disconnect', userId: string, code: number, reason: string }
  | { type: 'resync' }

/**
 * Carries hub events to every process that may hold a recipient's socket,
 * including this one. In one process events are handed over in memory; a
 * pub/sub transport (Redis) implements the same three calls for many.
 * Events must survive JSON serialization.
 */
export interface Transport {
  readonly name: string
  /** Resolves once the event is handed to every subscriber (or to the broker). */
  publish (event: HubEvent): Promise<void>
  subscribe (handler: (event: HubEvent) => void): void
  close (): Promise<void>
}

/** The single-process transport: publish calls the subscribers synchronously. */
export function memoryTransport (): Transport {
  let handlers: Array<(event: HubEvent) => void> = []
  return {
    name: 'memory',
    async publish (event) {
      for (const handler of handlers) handler(event)
    },
    subscribe (handler) { handlers.push(handler) },
    async close () { handlers = [] }
  }
}
