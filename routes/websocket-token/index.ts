import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { BearerHeaders, errors, Security } from '../../schemas/common.js'
import { WebsocketTokenResponseSchema } from '../../schemas/tokens.js'

/** A signed-in browser (cookie) or extension (Bearer) gets a single-use ticket for GET /ws?token=. */
const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  fastify.get('/', {
    onRequest: fastify.authenticate({ kinds: ['access'], cookie: true }),
    schema: {
      tags: ['tokens'],
      summary: 'Get a short-lived, single-use WebSocket ticket',
      description: 'Access token from `Authorization: Bearer` or the `access_token` cookie. Also served without the trailing slash.',
      security: Security.accessOrCookie,
      headers: BearerHeaders,
      response: { 200: WebsocketTokenResponseSchema, ...errors(401, 429, 503) }
    }
  }, async function websocketToken (request, reply) {
    const caller = request.caller!
    const ticket = fastify.tokens.issueWsTicket(caller.user.id, caller.expiresAt)
    reply.header('cache-control', 'no-store')
    return { token: ticket.token, expires_in: ticket.expiresIn }
  })
}
export default routes
