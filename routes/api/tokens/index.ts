import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { bearerToken } from '../../../plugins/app/auth.js'
import { errors, Security } from '../../../schemas/common.js'
import { API_SCOPES, IntrospectBodySchema, IntrospectResponseSchema, type IntrospectResponse } from '../../../schemas/tokens.js'

const digest = (value: string) => createHash('sha256').update(value).digest()

/**
 * RFC 7662 introspection, so other services can check our revocable API tokens
 * without sharing a key. Callers: INTROSPECTION_TOKEN, or an administrator (an
 * API token needs `tokens:introspect` if scoped).
 */
const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  const { tokens, store, config } = fastify
  const credential = config.INTROSPECTION_TOKEN === undefined ? null : digest(config.INTROSPECTION_TOKEN)
  const authenticate = fastify.authenticate({ kinds: ['access', 'api'] })
  const requireScope = fastify.requireScope('tokens:introspect')

  /** The configured credential lets a caller through; anything else is an admin's token. */
  async function authorize (request: FastifyRequest, reply: FastifyReply) {
    const presented = bearerToken(request)
    if (credential !== null && presented !== null && timingSafeEqual(digest(presented), credential)) return
    await authenticate.call(fastify, request, reply, () => {})
    await fastify.requireAdmin(request, reply, () => {})
    await requireScope.call(fastify, request, reply, () => {})
  }

  fastify.post('/introspect', {
    preValidation: authorize,
    schema: {
      tags: ['tokens'],
      summary: 'Is this API token active? (RFC 7662, with a reason when it is not)',
      security: [...Security.accessOrApi, { introspectionToken: [] }],
      body: IntrospectBodySchema,
      response: { 200: IntrospectResponseSchema, ...errors(400, 401, 403, 415, 429, 503) }
    }
  }, async function introspect (request, reply): Promise<IntrospectResponse> {
    reply.header('cache-control', 'no-store')
    const { token } = request.body
    const checked = tokens.check('api', token)
    if ('error' in checked) {
      if (checked.error === 'expired') return { active: false, reason: 'expired' }
      const otherKind = (['access', 'ws'] as const).some(kind => {
        const other = tokens.check(kind, token)
        return !('error' in other) || other.error === 'expired'
      })
      return { active: false, reason: otherKind ? 'wrong_kind' : 'unknown' }
    }
    const { claims } = checked
    // As current as authentication: a revocation, removal or demotion is seen at once here and
    // within a second on every process. A send quota changes with every send, on any process:
    // what is left is read from the store.
    let record = await fastify.apiTokenRecord(claims.jti)
    if (record !== null && record.token.sendQuota !== null) record = await store.authenticateApiToken(claims.jti)
    if (!record?.user || record.token.userId !== claims.sub) return { active: false, reason: 'unknown' }
    if (record.token.revokedAt !== null) return { active: false, reason: 'revoked' }
    if (record.token.expiresAt !== null && Date.parse(record.token.expiresAt) <= Date.now()) return { active: false, reason: 'expired' }
    const scopes = record.token.scopes ?? API_SCOPES.filter(scope => record.user!.role === 'admin' || !scope.startsWith('tokens:'))
    const iat = (claims as { iat?: number }).iat
    const { sendsPerMinute, sendQuota, sendQuotaRemaining } = record.token
    return {
      active: true,
      sub: claims.sub,
      scope: scopes.join(' '),
      ...(claims.exp !== undefined ? { exp: claims.exp } : {}),
      ...(iat !== undefined ? { iat } : {}),
      jti: claims.jti,
      iss: (claims as { iss?: string }).iss,
      aud: (claims as { aud?: string }).aud,
      token_type: 'api',
      // Send limits, as RFC 7662 allows extensions, only when the token has them (as exp).
      ...(sendsPerMinute !== null ? { sends_per_minute: sendsPerMinute } : {}),
      ...(sendQuota !== null ? { send_quota: sendQuota, send_quota_remaining: sendQuotaRemaining ?? 0 } : {})
    }
  })
}
export default routes
