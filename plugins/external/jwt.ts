import fp from 'fastify-plugin'
import fastifyJwt from '@fastify/jwt'
import type { FastifyInstance } from 'fastify'

export const ISSUER = 'gatehouse'

/**
 * The token kinds, one @fastify/jwt namespace each. The audience marks the kind,
 * and each namespace accepts only its own audience, so a token of one kind is
 * refused wherever another is expected (RFC 8725 §2.8). HS256 only: Clerk's RS256
 * tokens and unsigned `alg: none` tokens never verify here. Tokens signed with the
 * asymmetric keys (JWT_ALGORITHM=ES256) carry a `kid` and are verified by the
 * token service with that key instead (plugins/app/tokens.ts).
 */
export const TOKEN_KINDS = {
  access: 'gatehouse:access',
  ws: 'gatehouse:ws',
  api: 'gatehouse:api'
} as const
export type TokenKind = keyof typeof TOKEN_KINDS

/**
 * Claims a token of each kind must carry. Access tokens and tickets always
 * expire (a token without `exp` would live forever); an API token expires only
 * if minted with an expiration, and is checked against its stored record anyway.
 */
export const REQUIRED_CLAIMS: Record<TokenKind, string[]> = {
  access: ['sub', 'aud', 'iss', 'iat', 'exp'],
  ws: ['sub', 'aud', 'iss', 'iat', 'exp', 'jti'],
  api: ['sub', 'aud', 'iss', 'jti']
}

/**
 * Verified tokens signed with a key of the ring are remembered (fast-jwt's verifier
 * cache, until their `exp` and for 10 minutes at most; the verifier, and its cache,
 * goes when its key does), so a client presenting the same token request after
 * request pays the signature check and claim parsing once. Secret-signed tokens are
 * remembered by the token service itself (plugins/app/tokens.ts). Revocation is not
 * the verifier's concern: the caller's record is checked after it (auth.ts). A ws
 * ticket is used once: remembering it would only keep its claims in memory behind
 * every socket it opened.
 */
export const VERIFIER_CACHE: Record<TokenKind, { cache?: number }> = { access: { cache: 5000 }, ws: {}, api: { cache: 5000 } }

export default fp(async function jwt (fastify: FastifyInstance) {
  for (const [kind, audience] of Object.entries(TOKEN_KINDS) as Array<[TokenKind, string]>) {
    await fastify.register(fastifyJwt, {
      namespace: kind,
      secret: fastify.config.JWT_SECRET,
      sign: { algorithm: 'HS256', iss: ISSUER, aud: audience },
      verify: { algorithms: ['HS256'], allowedIss: ISSUER, allowedAud: audience, requiredClaims: REQUIRED_CLAIMS[kind] },
      // Tokens are read by the auth plugin, never from a decorator that guesses the source.
      decode: { complete: false }
    })
  }
}, { name: 'jwt', dependencies: ['env'] })
