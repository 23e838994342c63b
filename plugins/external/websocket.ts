import fp from 'fastify-plugin'
import fastifyWebsocket from '@fastify/websocket'
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { WebSocket } from 'ws'

/** Frames above 64 KiB close the socket with 1009 before they are buffered. */
export const MAX_FRAME_BYTES = 64 * 1024

// Socket errors come from peers (oversized or malformed frames, resets): ws has already sent
// the close code (e.g. 1009), so log quietly and let the close frame go out instead of terminating.
function onPeerError (log: FastifyBaseLogger, reqId: string, error: Error, socket: WebSocket): void {
  log.info({ err: error, reqId }, 'websocket peer error')
  if (socket.readyState === socket.OPEN) socket.close(1011, 'internal error')
}

/** The request id of each open socket, for its log lines. */
const requestIds = new WeakMap<WebSocket, string>()
/** One error listener per server log, shared by all its sockets. */
const errorListeners = new WeakMap<FastifyBaseLogger, (this: WebSocket, error: Error) => void>()

function errorListener (log: FastifyBaseLogger): (this: WebSocket, error: Error) => void {
  let listener = errorListeners.get(log)
  if (listener === undefined) {
    listener = function (this: WebSocket, error: Error) { onPeerError(log, requestIds.get(this) ?? '', error, this) }
    errorListeners.set(log, listener)
  }
  return listener
}

/**
 * Lets an open socket go of the HTTP request that opened it. @fastify/websocket's error
 * listener closes over the request and reply, and Node leaves the response attached to
 * the connection: together with their headers, streams and closures, about half of
 * what an idle socket held (measured with `npm run bench:ws-idle`). The listener is
 * replaced by one every socket shares, which finds the request id for the log.
 */
export function releaseUpgradeRequest (socket: WebSocket, request: FastifyRequest): void {
  const connection = request.raw.socket as Socket & { _httpMessage?: ServerResponse | null }
  connection._httpMessage?.detachSocket(connection)
  requestIds.set(socket, request.id)
  socket.removeAllListeners('error')
  socket.on('error', errorListener(request.server.log))
}

export default fp(async function websocket (fastify) {
  await fastify.register(fastifyWebsocket, {
    options: { maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false, clientTracking: false },
    // Errors before releaseUpgradeRequest (a handler that throws) and on routes that do not call it.
    errorHandler (error, socket, request) {
      onPeerError(request.log, request.id, error, socket)
    }
  })
}, { name: 'websocket' })
