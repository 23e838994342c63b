import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest, onRequestHookHandler, preHandlerHookHandler } from 'fastify'
import { parseCookie } from 'cookie'
import { forbidden, unauthorized } from '../../lib/errors.js'
import type { User } from '../../schemas/users.js'
import { AuthCache, shareInvalidations, type ApiTokenRecord } from './auth-cache.js'
import type { ApiScope } from '../../schemas/tokens.js'
import { batchLoader } from '../../lib/batch.js'

export type CallerKind = 'access' | 'api'

/** Who is calling, resolved from a verified token and the current database row. */
export interface Caller {
  user: User
  kind: CallerKind
  /** The API token id (jti), for api callers. */
  tokenId?: string
  /** The API token's scopes; null: whatever the user may (every access token, unscoped API tokens). */
  scopes?: readonly ApiScope[] | null
  /** The API token's own limit of send requests a minute; null or absent: none. */
  sendsPerMinute?: number | null
  /** Seconds since epoch when the credential stops being valid, if it does. */
  expiresAt?: number
}

export interface AuthenticateOptions {
  /** Token kinds accepted, in the Authorization header. */
  kinds: CallerKind[]
  /** Also accept an access token in the `access_token` cookie (browsers). */
  cookie?: boolean
  /** The 401 message clients of this route were written against. */
  message?: string
}

declare module 'fastify' {
  interface FastifyInstance {
    /** An onRequest hook that authenticates the caller or answers 401. */
    authenticate (options: AuthenticateOptions): onRequestHookHandler
    /** A preHandler that answers 403 unless the caller is an administrator now. */
    requireAdmin: preHandlerHookHandler
    /**
     * A user's current row (null once removed), through the authentication cache:
     * what every credential is checked against. Lookups arriving together share one store call.
     */
    userById (id: string): Promise<User | null>
    /**
     * An API token's record and its user's, through the authentication cache (so as
     * current as what authenticates the token itself); loading it marks the token used.
     */
    apiTokenRecord (id: string): Promise<ApiTokenRecord | null>
  }
  interface FastifyRequest {
    caller: Caller | null
  }
}

/** The credential from `Authorization: Bearer <token>`; null when absent, 401 when garbled. */
export function bearerToken (request: FastifyRequest, message?: string): string | null {
  const header = request.headers.authorization
  if (header === undefined) return null
  const match = /^Bearer +([A-Za-z0-9_.~+/=-]+)$/i.exec(header.trim())
  if (!match) throw unauthorized(message)
  return match[1]
}

/**
 * The access token a browser sends in the `access_token` cookie; null when absent.
 * Read only by the routes that accept it: parsing cookies on every request (a hook
 * for all routes) costs the many routes that never look.
 */
export function accessTokenCookie (request: FastifyRequest): string | null {
  const header = request.headers.cookie
  return header === undefined ? null : parseCookie(header).access_token || null
}

export default fp(async function auth (fastify: FastifyInstance) {
  const { tokens, store } = fastify
  fastify.decorateRequest('caller', null)

  // Changes through this process's store are forgotten here at once, and in the others through Redis.
  const cache = new AuthCache(fastify.config.AUTH_CACHE_TTL_MS)
  const redis = fastify.hasDecorator('redis') ? fastify.redis : null
  const shared = redis ? shareInvalidations(cache, redis, fastify.log.child({ plugin: 'auth' })) : null
  store.onChange(change => {
    cache.invalidate(change)
    shared?.publish(change)
  })

  const users = batchLoader<string, User | null>(async ids => {
    const found = new Map((await store.getUsers(ids)).map(user => [user.id, user]))
    return ids.map(id => found.get(id) ?? null)
  })
  const userById = (id: string) => cache.user(id, () => users.load(id))
  fastify.decorate('userById', userById)
  const apiTokenRecord = (id: string) => cache.apiToken(id, () => store.authenticateApiToken(id))
  fastify.decorate('apiTokenRecord', apiTokenRecord)

  /** Resolves a token of one of `kinds` to a caller; role and existence come from the store now. */
  async function resolve (token: string, kinds: CallerKind[], message?: string): Promise<Caller> {
    // Where several kinds are accepted, only the one the token names is verified.
    const kind = kinds.length === 1 ? kinds[0] : tokens.claimedKind(token)
    if (!kinds.includes(kind as CallerKind)) throw unauthorized(message)
    if (kind === 'access') {
      const claims = tokens.verify('access', token, message)
      const user = await userById(claims.sub)
      if (!user) throw unauthorized(message)
      return { user, kind, expiresAt: claims.exp }
    }
    const claims = tokens.verify('api', token, message)
    const jti = claims.jti
    const record = jti ? await apiTokenRecord(jti) : null
    if (!record?.user || record.token.revokedAt !== null) throw unauthorized(message)
    if (record.token.expiresAt !== null && Date.parse(record.token.expiresAt) <= Date.now()) throw unauthorized(message)
    return { user: record.user, kind: 'api', tokenId: jti, scopes: record.token.scopes, sendsPerMinute: record.token.sendsPerMinute, expiresAt: claims.exp }
  }

  fastify.decorate('authenticate', function authenticate (options: AuthenticateOptions): onRequestHookHandler {
    return async function authenticateRequest (request) {
      let token = bearerToken(request, options.message)
      let kinds = options.kinds
      if (token === null && options.cookie) {
        token = accessTokenCookie(request)
        kinds = ['access']
      }
      if (token === null) throw unauthorized(options.message)
      request.caller = await resolve(token, kinds, options.message)
    }
  })

  fastify.decorate('requireAdmin', async function requireAdmin (request: FastifyRequest) {
    if (request.caller?.user.role !== 'admin') throw forbidden('Administrator role required')
  })
}, { name: 'auth', dependencies: ['tokens', 'supabase'] })
