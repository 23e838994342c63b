import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import type { RawData, WebSocket } from 'ws'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { ApiError, unauthorized } from '../../lib/errors.js'
import { accessTokenCookie, bearerToken } from '../../plugins/app/auth.js'
import type { SocketSession } from '../../plugins/app/websocket/index.js'
import { PONG_FRAME } from '../../plugins/app/websocket/frames.js'
import { releaseUpgradeRequest } from '../../plugins/external/websocket.js'
import { errors } from '../../schemas/common.js'
import { ClientFrameSchema, WsClose, WsQuerySchema, type ClientFrame } from '../../schemas/ws.js'

declare module 'fastify' {
  interface FastifyRequest {
    wsSession: SocketSession | null
  }
}

const clientFrame = TypeCompiler.Compile(ClientFrameSchema)

/** The frame as a known client frame, or null for anything else (binary, not JSON, unknown shape). */
function parseFrame (data: RawData, isBinary: boolean): ClientFrame | null {
  if (isBinary) return null
  let value: unknown
  try {
    value = JSON.parse(data.toString())
  } catch {
    return null
  }
  return clientFrame.Check(value) ? value : null
}

/**
 * `GET /ws`: real-time delivery. Authenticated before the upgrade, so a refused
 * client gets an HTTP 401 in the error envelope and never a socket.
 */
const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  const { tokens, hub, config } = fastify
  fastify.decorateRequest('wsSession', null)

  /**
   * A ws ticket in `?token=` (browsers), else an access token in `Authorization`
   * (other clients), else the `access_token` cookie from an allowed Origin.
   * Long-lived tokens are never accepted in the URL, where proxies log them.
   */
  async function authenticate (request: FastifyRequest<{ Querystring: { token?: unknown } }>): Promise<SocketSession> {
    let userId: string
    let expiresAt: number | null
    const ticket = request.query.token
    if (ticket !== undefined) {
      if (typeof ticket !== 'string') throw unauthorized()
      const claims = await tokens.redeemWsTicket(ticket)
      userId = claims.sub
      expiresAt = claims.sexp ? claims.sexp * 1000 : null
    } else {
      let token = bearerToken(request)
      const cookie = token === null ? accessTokenCookie(request) : null
      if (cookie !== null) {
        // A cookie rides along on any page's request: only pages we trust may use it.
        const origin = request.headers.origin
        if (origin === undefined || !config.CORS_ORIGINS.includes(origin)) throw new ApiError(403, 'ORIGIN_NOT_ALLOWED', 'Origin not allowed')
        token = cookie
      }
      if (token === null) throw unauthorized()
      const claims = tokens.verify('access', token)
      userId = claims.sub
      expiresAt = claims.exp * 1000
    }
    // Checked like every other credential: a removed user is refused (the cache forgets them at once).
    if (!(await fastify.userById(userId))) throw unauthorized()
    return { userId, expiresAt }
  }

  // Sockets being opened, by user: counted with the open ones, so a burst of upgrades cannot pass the cap together.
  const opening = new Map<string, number>()
  const releases = new WeakMap<object, () => void>()

  /** Holds one of the user's WS_MAX_SOCKETS_PER_USER places until the socket is attached or the connection ends. */
  function reservePlace (request: FastifyRequest, userId: string): void {
    const max = config.WS_MAX_SOCKETS_PER_USER
    if (hub.socketsOf(userId) + (opening.get(userId) ?? 0) >= max) {
      throw new ApiError(429, 'TOO_MANY_SOCKETS', `Too many open sockets: at most ${max} per user`, { maxSocketsPerUser: max })
    }
    opening.set(userId, (opening.get(userId) ?? 0) + 1)
    let held = true
    const connection = request.raw.socket
    const release = () => {
      if (!held) return
      held = false
      // Not left on an open socket for its whole life.
      connection?.off('close', release)
      const left = (opening.get(userId) ?? 1) - 1
      if (left > 0) opening.set(userId, left)
      else opening.delete(userId)
    }
    releases.set(request.raw, release)
    connection?.once('close', release)
  }

  /** Client frames, for every socket: the hub knows whose socket it is. */
  function onMessage (this: WebSocket, data: RawData, isBinary: boolean): void {
    const frame = parseFrame(data, isBinary)
    if (frame === null) {
      this.close(WsClose.POLICY_VIOLATION, 'invalid frame')
      return
    }
    if (frame.type === 'ping') {
      this.send(PONG_FRAME)
      return
    }
    hub.acknowledge(this, frame.ids)
  }

  fastify.get('/', {
    websocket: true,
    // Connection attempts per client IP, on top of the global request budget.
    config: { rateLimit: { max: config.WS_CONNECT_RATE_MAX, timeWindow: '1 minute' } },
    schema: {
      summary: 'Real-time message delivery (WebSocket)',
      querystring: WsQuerySchema,
      response: errors(401, 403, 426, 429, 503)
    },
    preValidation: async function authenticateSocket (request) {
      // Checked first: a plain HTTP request must not use up a single-use ticket.
      if (!request.ws) throw new ApiError(426, 'UPGRADE_REQUIRED', 'This endpoint speaks WebSocket only')
      if (hub.draining) throw new ApiError(503, 'SERVER_DRAINING', 'Server is shutting down, reconnect shortly')
      request.wsSession = await authenticate(request)
      reservePlace(request, request.wsSession.userId)
    }
  }, function onSocket (socket, request) {
    // Shared listeners and no closure over the request: an idle socket keeps only what it needs.
    socket.on('message', onMessage)
    hub.attach(socket, request.wsSession as SocketSession)
    releases.get(request.raw)?.()
    releaseUpgradeRequest(socket, request)
  })
}

export default routes
