import fp from 'fastify-plugin'
import fastifyWebsocket from '@fastify/websocket'

/** Frames above 64 KiB close the socket with 1009 before they are buffered. */
export const MAX_FRAME_BYTES = 64 * 1024

export default fp(async function websocket (fastify) {
  await fastify.register(fastifyWebsocket, {
    options: { maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false, clientTracking: false },
    // Socket errors come from peers (oversized or malformed frames, resets): ws has already sent
    // the close code (e.g. 1009), so log quietly and let the close frame go out instead of terminating.
    errorHandler (error, socket, request) {
      request.log.info({ err: error }, 'websocket peer error')
      if (socket.readyState === socket.OPEN) socket.close(1011, 'internal error')
    }
  })
}, { name: 'websocket' })
