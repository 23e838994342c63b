import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { WebSocket } from 'ws'
import { Counter, Gauge } from 'prom-client'
import { LocalHub } from './local.js'
import { memoryTransport, type Transport } from './transport.js'
import { redisTransport } from './redis-transport.js'
import { AckWriter } from './acks.js'
import type { SendResult } from '../../../schemas/messages.js'

/** One accepted send, as the messaging plugin hands it to delivery. */
export interface MessageBatch {
  senderId: string
  content: string
  templateId: string | null
  createdAt: string
  messages: Array<{ id: string, recipientId: string, seq: number }>
}

/** The batch that delivers a stored send: its messages, each with its seq. */
export function batchOf (send: { senderId: string, content: string, templateId: string | null }, result: SendResult): MessageBatch {
  const { seqs } = result
  return {
    senderId: send.senderId,
    content: send.content,
    templateId: send.templateId,
    createdAt: result.createdAt,
    messages: result.messages.map(({ id, recipientId }, i) => ({ id, recipientId, seq: seqs[i] }))
  }
}

/** Who an authenticated socket belongs to, and until when (ms since epoch; null: no limit). */
export interface SocketSession {
  userId: string
  expiresAt: number | null
}

export interface Hub {
  /** Delivers a stored batch to every connected recipient, on whichever process holds the socket. */
  publish (batch: MessageBatch): Promise<void>
  /** Closes every socket of a user, everywhere (revocation, user removed). */
  disconnectUser (userId: string, code: number, reason: string): Promise<void>
  /**
   * Records an attached socket's acknowledgements, for its user; written with other
   * sockets' in one statement. The socket is not read until they are written.
   */
  acknowledge (socket: WebSocket, ids: string[]): void
  /** Holds this process's ack writes until `work` (a large send storing its later chunks) settles. */
  deferAcksDuring (work: Promise<unknown>): void
  /** Takes an authenticated socket: `ready`, then the user's pending messages, then live ones. */
  attach (socket: WebSocket, session: SocketSession): void
  /** Sockets a user holds on this process. */
  socketsOf (userId: string): number
  /** Sockets open on this process. */
  readonly connections: number
  /** Users with at least one socket on this process. */
  readonly connectedUsers: number
  /** Frames sent by this process (ready frames excluded). */
  readonly delivered: number
  /** True once shutdown began: sockets are closed with 1001 and new ones refused. */
  readonly draining: boolean
}

declare module 'fastify' {
  interface FastifyInstance {
    hub: Hub
  }
}

export interface HubOptions {
  /** How events reach other processes; in memory (one process) by default. */
  transport?: Transport
}

/** Sockets get this long to answer the 1001 close before the store shuts. */
const DRAIN_WAIT_MS = 2000

export default fp(async function hub (fastify: FastifyInstance, opts: HubOptions) {
  const { config, store, redis } = fastify
  const transport = opts.transport ?? (redis ? redisTransport(redis, fastify.log.child({ plugin: 'hub' })) : memoryTransport())
  const local = new LocalHub({
    store,
    log: fastify.log.child({ plugin: 'hub' }),
    sendBufferBytes: config.WS_SEND_BUFFER_BYTES,
    heartbeatMs: config.WS_HEARTBEAT_MS
  })

  const acks = new AckWriter(store, fastify.log.child({ plugin: 'hub' }))
  const writeAcks = (userId: string, ids: string[]) => acks.ack(userId, ids)

  transport.subscribe(event => {
    // A delivery fault must not fail the send that published it: the messages are stored and replay later.
    try {
      if (event.type === 'batch') local.deliver(event.batch)
      else if (event.type === 'disconnect') local.disconnect(event.userId, event.code, event.reason)
      else local.resync()
    } catch (err) {
      fastify.log.error({ err, event: event.type }, 'hub event failed')
    }
  })

  fastify.decorate('hub', {
    publish: (batch) => transport.publish({ type: 'batch', batch }),
    disconnectUser: (userId, code, reason) => transport.publish({ type: 'disconnect', userId, code, reason }),
    acknowledge: (socket, ids) => local.acknowledge(socket, ids, writeAcks),
    deferAcksDuring: (work) => { acks.deferDuring(work) },
    attach: (socket, session) => local.attach(socket, session.userId, session.expiresAt),
    socketsOf: (userId) => local.socketsOf(userId),
    get connections () { return local.connections },
    get connectedUsers () { return local.connectedUsers },
    get delivered () { return local.delivered },
    get draining () { return local.draining }
  } satisfies Hub)

  const hubState = fastify.hub
  let reported = 0
  const metrics = [
    new Gauge({
      name: 'gatehouse_ws_connections',
      help: 'WebSocket connections open on this process',
      registers: [],
      collect () { this.set(hubState.connections) }
    }),
    new Gauge({
      name: 'gatehouse_ws_users',
      help: 'Users with at least one WebSocket on this process',
      registers: [],
      collect () { this.set(hubState.connectedUsers) }
    }),
    new Counter({
      name: 'gatehouse_ws_frames_delivered_total',
      help: 'Message frames sent to sockets by this process',
      registers: [],
      collect () { this.inc(hubState.delivered - reported); reported = hubState.delivered }
    })
  ]
  for (const metric of metrics) fastify.metrics.registerMetric(metric)

  // preClose runs before any onClose hook: sockets learn of the shutdown while the store still answers.
  fastify.addHook('preClose', async () => {
    await local.drain(Math.min(DRAIN_WAIT_MS, config.SHUTDOWN_GRACE_MS))
  })
  fastify.addHook('onClose', async () => {
    local.stop()
    await transport.close()
  })
}, { name: 'hub', dependencies: ['env', 'redis', 'supabase', 'metrics'] })
