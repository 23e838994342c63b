import fp from 'fastify-plugin'
import fastifyJwt from '@fastify/jwt'
import type { FastifyInstance } from 'fastify'

export const ISSUER = 'gatehouse'

/**
 * The token kinds, one @fastify/jwt namespace each. The audience marks the kind,
 * and each namespace accepts only its own audience, so a token of one kind is
 * refused wherever another is expected (RFC 8725 §2.8). HS256 only: Clerk's RS256
 * tokens and unsigned `alg: none` tokens never verify here.
 */
export const TOKEN_KINDS = {
  access: 'gatehouse:access',
  ws: 'gatehouse:ws',
  api: 'gatehouse:api'
} as const
export type TokenKind = keyof typeof TOKEN_KINDS

export default fp(async function jwt (fastify: FastifyInstance) {
  for (const [kind, audience] of Object.entries(TOKEN_KINDS)) {
    await fastify.register(fastifyJwt, {
      namespace: kind,
      secret: fastify.config.JWT_SECRET,
      sign: { algorithm: 'HS256', iss: ISSUER, aud: audience },
      verify: { algorithms: ['HS256'], allowedIss: ISSUER, allowedAud: audience, requiredClaims: ['sub', 'aud', 'iss'] },
      // Tokens are read by the auth plugin, never from a decorator that guesses the source.
      decode: { complete: false }
    })
  }
}, { name: 'jwt', dependencies: ['env'] })
