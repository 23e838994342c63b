import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest, preHandlerHookHandler } from 'fastify'
import { ApiError, unauthorized } from '../../lib/errors.js'
import type { ApiScope } from '../../schemas/tokens.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * A hook (preValidation or preHandler, after authentication) that answers 403
     * INSUFFICIENT_SCOPE unless the caller's token carries `scope`. Callers without
     * scopes (access tokens, API tokens minted without scopes) pass, as they always did.
     */
    requireScope (scope: ApiScope): preHandlerHookHandler
  }
}

export const insufficientScope = (scope: ApiScope) =>
  new ApiError(403, 'INSUFFICIENT_SCOPE', `Forbidden: the token lacks the scope "${scope}"`, { requiredScope: scope })

/** Authorization by scope, kept apart from authentication (auth.ts) so each stays small. */
export default fp(async function scopes (fastify: FastifyInstance) {
  fastify.decorate('requireScope', function requireScope (scope: ApiScope): preHandlerHookHandler {
    return async function checkScope (request: FastifyRequest) {
      const caller = request.caller
      if (!caller) throw unauthorized()
      if (caller.scopes && !caller.scopes.includes(scope)) throw insufficientScope(scope)
    }
  })
}, { name: 'scopes', dependencies: ['auth'] })
