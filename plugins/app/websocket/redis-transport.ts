import type { FastifyBaseLogger } from 'fastify'
import { DependencyUnavailableError } from '../../../lib/errors.js'
import { channels, type RedisConnections } from '../redis.js'
import type { HubEvent, Transport } from './transport.js'

/**
 * Hub events over Redis pub/sub: every process publishes to one channel and
 * hears its own events back, so local and remote sockets take the same path.
 *
 * Pub/sub is at-most-once: what is published while a process's subscription is
 * down never reaches it. So each time the subscription is (re)established the
 * transport hands its subscribers a `resync`, and the hub makes every socket
 * catch up from the store.
 */
export function redisTransport (redis: RedisConnections, log: FastifyBaseLogger): Transport {
  const channel = channels(redis.prefix).hub
  const { commands, subscriber } = redis
  let handlers: Array<(event: HubEvent) => void> = []
  const emit = (event: HubEvent) => { for (const handler of handlers) handler(event) }

  subscriber.on('message', (from: string, text: string) => {
    if (from !== channel) return
    let event: HubEvent
    try {
      event = JSON.parse(text)
    } catch (err) {
      log.warn({ err }, 'unreadable hub event ignored')
      return
    }
    emit(event)
  })
  // Subscribing again on every (re)connection, then catching up: anything published
  // before the subscription took effect is read from the store.
  const subscribe = () => {
    subscriber.subscribe(channel).then(
      () => emit({ type: 'resync' }),
      err => log.warn({ err }, 'hub subscription failed; retrying on the next connection')
    )
  }
  subscriber.on('ready', subscribe)
  if (subscriber.status === 'ready') subscribe()

  return {
    name: 'redis',
    async publish (event) {
      try {
        await commands.publish(channel, JSON.stringify(event))
      } catch (err) {
        throw new DependencyUnavailableError('Redis', err)
      }
    },
    subscribe (handler) { handlers.push(handler) },
    async close () {
      subscriber.off('ready', subscribe)
      handlers = []
    }
  }
}
