import fp from 'fastify-plugin'
import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { JWT } from '@fastify/jwt'
import { unauthorized } from '../../lib/errors.js'
import { ExpiringMap } from '../../lib/expiring-map.js'
import { memoryTicketLedger, redisTicketLedger, type TicketLedger } from './websocket/ticket-ledger.js'
import { createSigner, createVerifier } from 'fast-jwt'
import { ISSUER, REQUIRED_CLAIMS, TOKEN_KINDS, VERIFIER_CACHE, type TokenKind } from '../external/jwt.js'
import type { KeyRing } from './keys.js'
import type { User } from '../../schemas/users.js'

export interface AccessClaims {
  sub: string
  clerk_id: string | null
  email: string | null
  plan_type: string
  credits: number
  organization_id: string | null
  sid: string
  exp: number
}
export interface WsTicketClaims { sub: string, jti: string, exp: number, /** when the session behind the ticket ends */ sexp?: number }
export interface ApiClaims { sub: string, jti: string, exp?: number }
interface ClaimsByKind { access: AccessClaims, ws: WsTicketClaims, api: ApiClaims }

/** `{"alg":"HS256","typ":"JWT"}.`: no kid, so verified with JWT_SECRET alone. */
const SECRET_SIGNED_HEADER = `${Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url')}.`

const KIND_BY_AUDIENCE = new Map(Object.entries(TOKEN_KINDS).map(([kind, audience]) => [audience as string, kind as TokenKind]))

/** The `exp` claim of a token this service just signed. */
function expiresAtSeconds (token: string): number {
  return (JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()) as { exp: number }).exp
}

const VERIFIED_MAX_AGE_MS = 10 * 60_000
const VERIFIED_MAX_ENTRIES = 5000

/**
 * Claims of tokens verified lately, by the token itself, until their `exp` and for 10
 * minutes at most, so a client presenting the same token request after request pays
 * the signature check once. fast-jwt's own cache keys entries by a SHA-256 of the
 * token, which costs as much as half a verification, and warns against other keys;
 * here the key is the token: process memory that holds JWT_SECRET loses nothing by
 * holding tokens it signed. Revocation is not this cache's concern: the caller's
 * record is checked after it (auth.ts).
 */
class VerifiedTokens {
  private readonly claims = new ExpiringMap<string, unknown>(VERIFIED_MAX_ENTRIES)

  get (token: string): unknown {
    return this.claims.get(token)
  }

  set (token: string, claims: unknown): unknown {
    const now = Date.now()
    const exp = (claims as { exp?: unknown }).exp
    const until = Math.min(now + VERIFIED_MAX_AGE_MS, typeof exp === 'number' ? exp * 1000 : Infinity)
    if (until > now) this.claims.set(token, claims, until)
    return claims
  }
}

/**
 * Lifetimes are in seconds, as @fastify/jwt reads a numeric `expiresIn`
 * (it converts to fast-jwt's milliseconds itself).
 */
export class TokenService {
  /**
   * With JWT_ALGORITHM=ES256, the shared signing keys: access tokens and tickets
   * are signed with the current key and carry its `kid`. API tokens stay HS256:
   * they live for months and are checked against their record anyway (other
   * services ask the introspection endpoint), so a key rotation never breaks them.
   */
  keyRing: KeyRing | null = null
  private signers = new Map<string, (payload: Record<string, unknown>) => string>()
  private verifiers = new Map<string, (token: string) => unknown>()
  private verifiersVersion = -1
  /** Secret-signed access and API tokens verified lately; a ws ticket is used once, so never kept. */
  private readonly verified: Partial<Record<TokenKind, VerifiedTokens>> = { access: new VerifiedTokens(), api: new VerifiedTokens() }

  constructor (
    private readonly jwt: JWT,
    private readonly ttl: { access: number, ws: number },
    public ticketLedger: TicketLedger
  ) {}

  private ns (kind: TokenKind) { return (this.jwt as unknown as Record<TokenKind, JWT>)[kind] }

  /** Signs an access token or ticket with the current asymmetric key, or with JWT_SECRET without a key ring. */
  private sign (kind: 'access' | 'ws', payload: Record<string, unknown>, expiresInSeconds: number): string {
    const key = this.keyRing?.current()
    if (!key) {
      // Every claim in the payload and no options: given options, @fastify/jwt builds a new signer per call.
      const iat = Math.floor(Date.now() / 1000)
      return this.ns(kind).sign({ ...payload, iat, exp: iat + expiresInSeconds })
    }
    const id = `${kind}:${key.kid}:${expiresInSeconds}`
    let signer = this.signers.get(id)
    if (!signer) {
      if (this.signers.size > 8) this.signers.clear()
      // fast-jwt counts expiresIn in milliseconds.
      signer = createSigner({ key: key.privateKeyPem, algorithm: 'ES256', kid: key.kid, iss: ISSUER, aud: TOKEN_KINDS[kind], expiresIn: expiresInSeconds * 1000 })
      this.signers.set(id, signer)
    }
    return signer(payload)
  }

  /**
   * A token naming a `kid` is verified only with that key and only as ES256;
   * one without is verified only as HS256 with JWT_SECRET. So neither path can
   * be fed the other's token (no algorithm confusion), and a retired or unknown
   * kid verifies nothing.
   */
  private verifyWithKid (kind: TokenKind, token: string): unknown {
    // The header every token signed with JWT_SECRET carries: nothing in it to read.
    if (token.startsWith(SECRET_SIGNED_HEADER)) {
      const remembered = this.verified[kind]
      if (!remembered) return this.ns(kind).verify(token)
      return remembered.get(token) ?? remembered.set(token, this.ns(kind).verify(token))
    }
    const header = JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString('utf8')) as { kid?: unknown }
    if (header.kid === undefined) return this.ns(kind).verify(token)
    const ring = this.keyRing
    if (kind === 'api' || !ring || typeof header.kid !== 'string') throw new Error('no such key')
    if (ring.version !== this.verifiersVersion) {
      this.verifiers.clear()
      this.verifiersVersion = ring.version
    }
    const id = `${kind}:${header.kid}`
    let verify = this.verifiers.get(id)
    if (!verify) {
      const publicKey = ring.verificationKey(header.kid)
      if (!publicKey) {
        // Perhaps a key this process has not read yet: look again (throttled), refuse this time.
        ring.refreshSoon()
        throw new Error('no such key')
      }
      verify = createVerifier({
        key: publicKey.export({ format: 'pem', type: 'spki' }) as string,
        algorithms: ['ES256'],
        allowedIss: ISSUER,
        allowedAud: TOKEN_KINDS[kind],
        requiredClaims: REQUIRED_CLAIMS[kind],
        ...VERIFIER_CACHE[kind]
      })
      this.verifiers.set(id, verify)
    }
    return verify(token)
  }

  issueAccess (user: User, sessionId: string = randomUUID()) {
    const token = this.sign('access', {
      sub: user.id,
      clerk_id: user.clerkId,
      email: user.email,
      plan_type: user.planType,
      credits: user.credits,
      organization_id: user.organizationId,
      sid: sessionId
    }, this.ttl.access)
    return { token, expiresIn: this.ttl.access, expiresAt: new Date(expiresAtSeconds(token) * 1000).toISOString() }
  }

  /** A short-lived single-use ticket; `sessionExpiresAt` (seconds) bounds the socket it opens. */
  issueWsTicket (userId: string, sessionExpiresAt?: number) {
    const payload: Record<string, unknown> = { sub: userId, jti: randomUUID() }
    if (sessionExpiresAt) payload.sexp = sessionExpiresAt
    const token = this.sign('ws', payload, this.ttl.ws)
    return { token, expiresIn: this.ttl.ws }
  }

  /** `exp` is the expiration itself (whole seconds), not a lifetime counted from now. */
  issueApi (tokenId: string, userId: string, expiresAt: Date | null) {
    const payload: Record<string, unknown> = { sub: userId }
    if (expiresAt) payload.exp = Math.floor(expiresAt.getTime() / 1000)
    return this.ns('api').sign(payload, { jti: tokenId })
  }

  /**
   * The kind a token names in its audience, read without verifying anything: only to
   * choose which kind's verifier then checks it (signature, issuer, that audience,
   * expiry), rather than letting each kind's verifier fail in turn, each failure an
   * exception. null: not a token of ours.
   */
  claimedKind (token: string): TokenKind | null {
    try {
      const { aud } = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { aud?: unknown }
      return KIND_BY_AUDIENCE.get(aud as string) ?? null
    } catch {
      return null
    }
  }

  /** Verifies signature, issuer, audience (the kind) and expiry; any failure is a 401. */
  verify<K extends TokenKind> (kind: K, token: string, message?: string): ClaimsByKind[K] {
    try {
      return this.verifyWithKid(kind, token) as ClaimsByKind[K]
    } catch {
      throw unauthorized(message)
    }
  }

  /**
   * Like verify, without throwing: the claims, or why the token does not verify
   * (`expired`: signed by us but past its `exp`; `invalid`: anything else).
   */
  check<K extends TokenKind> (kind: K, token: string): { claims: ClaimsByKind[K] } | { error: 'expired' | 'invalid' } {
    try {
      return { claims: this.verifyWithKid(kind, token) as ClaimsByKind[K] }
    } catch (error) {
      return { error: /EXPIRED/.test(String((error as { code?: unknown }).code)) ? 'expired' : 'invalid' }
    }
  }

  /** Verifies a ws ticket and consumes it: a second use is refused. */
  async redeemWsTicket (token: string): Promise<WsTicketClaims> {
    const claims = this.verify('ws', token)
    if (!claims.jti || !(await this.ticketLedger.consume(claims.jti, claims.exp))) throw unauthorized('Token already used')
    return claims
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    tokens: TokenService
  }
}

export default fp(async function tokens (fastify: FastifyInstance) {
  // The CLI signs tokens without Redis; the server shares the ledger when REDIS_URL is set.
  const redis = fastify.hasDecorator('redis') ? fastify.redis : null
  let ledger: TicketLedger
  if (redis) {
    ledger = redisTicketLedger(redis)
  } else {
    const memory = memoryTicketLedger()
    fastify.addHook('onClose', async () => { memory.close() })
    ledger = memory
  }
  fastify.decorate('tokens', new TokenService(fastify.jwt, {
    access: fastify.config.ACCESS_TOKEN_TTL,
    ws: fastify.config.WS_TOKEN_TTL
  }, ledger))
}, { name: 'tokens', dependencies: ['env', 'jwt'] })
