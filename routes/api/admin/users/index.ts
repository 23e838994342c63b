import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { badRequest } from '../../../../lib/errors.js'
import { errors, Security } from '../../../../schemas/common.js'
import { FindUsersQuerySchema, FindUsersResponseSchema } from '../../../../schemas/users.js'

/**
 * Administrators look users up by what an API client knows: users created by the
 * Clerk webhook get a generated id, which this returns for the messaging API.
 */
const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  // Authorization before validation, as for the token routes.
  fastify.addHook('onRequest', fastify.authenticate({ kinds: ['access', 'api'] }))
  fastify.addHook('preValidation', fastify.requireAdmin)

  fastify.get('/', {
    schema: {
      tags: ['admin'],
      description: 'Administrators only: an access or API token of a user whose role is `admin` (read from the store at each request); others get 403.',
      security: Security.accessOrApi,
      summary: 'Find users by Clerk id or e-mail (administrators only)',
      querystring: FindUsersQuerySchema,
      response: { 200: FindUsersResponseSchema, ...errors(400, 401, 403, 429, 503) }
    }
  }, async function findUsers (request) {
    const { clerkId, email } = request.query
    if (clerkId === undefined && email === undefined) throw badRequest('clerkId or email is required')
    return { success: true as const, users: await fastify.store.findUsers({ clerkId, email }) }
  })
}
export default routes
