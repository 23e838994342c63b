import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { errors } from '../../schemas/common.js'
import { JwksSchema } from '../../schemas/keys.js'

/**
 * How long verifiers may cache the key set. A key is published as `next` before
 * it signs anything, so rotating no more often than this never shows a verifier
 * a kid it has not fetched.
 */
export const JWKS_MAX_AGE_SECONDS = 300

/** The public keys that verify access tokens and tickets (empty with HS256), for other services. */
const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  fastify.get('/jwks.json', {
    schema: {
      summary: 'Public keys verifying access tokens (RFC 7517 JWK Set; empty with JWT_ALGORITHM=HS256)',
      tags: ['tokens'],
      response: { 200: JwksSchema, ...errors(429) }
    }
  }, async function jwks (_request, reply) {
    reply.header('cache-control', `public, max-age=${JWKS_MAX_AGE_SECONDS}`)
    return fastify.keyRing?.jwks() ?? { keys: [] }
  })
}
export default routes
