import fp from 'fastify-plugin'
import fastifyWebsocket from '@fastify/websocket'

/** Frames above 64 KiB close the socket with 1009 before they are buffered. */
export const MAX_FRAME_BYTES = 64 * 1024

export default fp(async function websocket (fastify) {
  await fastify.register(fastifyWebsocket, {
    options: { maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false, clientTracking: false }
  })
}, { name: 'websocket' })
