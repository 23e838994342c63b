import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'

/** One accepted send, as the messaging plugin hands it to delivery. */
export interface MessageBatch {
  senderId: string
  content: string
  templateId: string | null
  createdAt: string
  messages: Array<{ id: string, recipientId: string, seq: number }>
}

export interface Hub {
  /** Delivers a stored batch to every connected recipient, on whichever process holds the socket. */
  publish (batch: MessageBatch): Promise<void>
  /** Closes every socket of a user, everywhere (revocation, user removed). */
  disconnectUser (userId: string, code: number, reason: string): Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance {
    hub: Hub
  }
}

export default fp(async function hub (fastify: FastifyInstance) {
  fastify.decorate('hub', {
    async publish () {},
    async disconnectUser () {}
  } satisfies Hub)
}, { name: 'hub', dependencies: ['env'] })
