import fp from 'fastify-plugin'
import type { TokenVerificationError } from '@clerk/backend/errors'
import type { FastifyInstance } from 'fastify'
import { ApiError, DependencyUnavailableError, unauthorized } from '../../lib/errors.js'

export interface ClerkSession {
  clerkId: string
  sessionId: string
}

export interface ClerkVerifier {
  /** Verifies a Clerk session token; 401 when it is not one, 503 when Clerk cannot be reached. */
  verifySessionToken (token: string): Promise<ClerkSession>
}

declare module 'fastify' {
  interface FastifyInstance {
    clerk: ClerkVerifier
  }
}

// Failures to fetch Clerk's keys are Clerk being unreachable, not a bad token.
const UNAVAILABLE_REASONS = new Set(['jwk-remote-failed-to-load', 'jwk-remote-missing', 'jwk-failed-to-resolve'])

export default fp(async function clerk (fastify: FastifyInstance) {
  const { CLERK_JWT_KEY: jwtKey, CLERK_SECRET_KEY: secretKey, CLERK_AUTHORIZED_PARTIES: authorizedParties } = fastify.config
  // @clerk/backend is a large package: a server without Clerk never loads it.
  const verifyToken = jwtKey || secretKey ? (await import('@clerk/backend')).verifyToken : null

  fastify.decorate('clerk', {
    async verifySessionToken (token: string): Promise<ClerkSession> {
      if (verifyToken === null) {
        throw new ApiError(503, 'CLERK_NOT_CONFIGURED', 'Clerk verification is not configured (set CLERK_JWT_KEY or CLERK_SECRET_KEY)')
      }
      let claims: { sub?: unknown, sid?: unknown }
      try {
        // The package's verifyToken returns the claims and throws a TokenVerificationError.
        claims = await verifyToken(token, {
          jwtKey,
          secretKey,
          authorizedParties: authorizedParties.length > 0 ? authorizedParties : undefined,
          clockSkewInMs: 5000
        })
      } catch (error) {
        const reason = (error as Partial<TokenVerificationError>).reason
        if (reason && UNAVAILABLE_REASONS.has(reason)) throw new DependencyUnavailableError('Clerk', error)
        fastify.log.info({ reason: reason ?? 'malformed' }, 'Clerk token refused')
        throw unauthorized('Invalid Clerk token')
      }
      const { sub, sid } = claims
      // A session token always names its session; other Clerk JWTs (templates, machine tokens) do not.
      if (typeof sub !== 'string' || !sub || typeof sid !== 'string' || !sid) throw unauthorized('Invalid Clerk token')
      return { clerkId: sub, sessionId: sid }
    }
  })
}, { name: 'clerk', dependencies: ['env'] })
