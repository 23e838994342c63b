import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { bearerToken } from '../../../plugins/app/auth.js'
import { notFound, unauthorized } from '../../../lib/errors.js'
import { BearerHeaders, errors, Security } from '../../../schemas/common.js'
import { DashboardTokenResponseSchema } from '../../../schemas/tokens.js'

const MISSING = 'Missing or invalid Authorization header'

/** The dashboard trades a Clerk session for the extension's access token. */
const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  fastify.post('/generate', {
    config: { rateLimit: { max: 60, timeWindow: '1 minute' } },
    schema: {
      tags: ['tokens'],
      summary: 'Exchange a Clerk session token for a service access token',
      description: 'Authorization: Bearer <Clerk session token>. The access token lasts ACCESS_TOKEN_TTL seconds (24 h by default).',
      security: Security.clerk,
      headers: BearerHeaders,
      response: { 200: DashboardTokenResponseSchema, ...errors(401, 404, 429, 503) }
    }
  }, async function generate (request, reply) {
    const clerkToken = bearerToken(request, MISSING)
    if (clerkToken === null) throw unauthorized(MISSING)
    const session = await fastify.clerk.verifySessionToken(clerkToken)
    const user = await fastify.store.getUserByClerkId(session.clerkId)
    if (!user) throw notFound('User not found in database')
    const issued = fastify.tokens.issueAccess(user)
    reply.header('cache-control', 'no-store')
    return {
      success: true as const,
      access_token: issued.token,
      expires_in: issued.expiresIn,
      expires_at: issued.expiresAt,
      token_type: 'Bearer' as const
    }
  })
}
export default routes
