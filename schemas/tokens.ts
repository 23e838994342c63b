import { Type, type Static } from '@sinclair/typebox'
import { Id, IsoDate, NullableIsoDate, Nullable, Text } from './common.js'

/**
 * What a scoped API token may do; a token minted without scopes may do whatever
 * its owner may (as tokens always could). Access tokens are never scoped.
 */
export const API_SCOPES = [
  'messages:send-template',
  'messages:send-bulk',
  'messages:send-private',
  'templates:read',
  'templates:write',
  'inbox:read',
  'tokens:admin',
  'tokens:introspect'
] as const
/** The largest per-minute limit or quota a token may carry (a Postgres integer holds it). */
export const MAX_SEND_LIMIT = 1_000_000_000

export type ApiScope = typeof API_SCOPES[number]
export const ApiScopeSchema = Type.Union(API_SCOPES.map(scope => Type.Literal(scope)))
export const isApiScope = (value: string): value is ApiScope => (API_SCOPES as readonly string[]).includes(value)

export const ApiTokenSchema = Type.Object({
  id: Type.String({ description: 'The token id (its jti); never the token itself' }),
  userId: Type.String(),
  createdBy: Nullable(Type.String()),
  name: Nullable(Type.String()),
  scopes: Nullable(Type.Array(ApiScopeSchema, { description: 'What the token may do; null: whatever its owner may' })),
  sendsPerMinute: Nullable(Type.Integer({ description: 'Send requests a minute the token may make; null: no limit of its own' })),
  sendQuota: Nullable(Type.Integer({ description: 'Send requests the token may make in all; null: no quota' })),
  sendQuotaRemaining: Nullable(Type.Integer({ description: 'What is left of the quota; null: no quota' })),
  expiresAt: NullableIsoDate,
  revokedAt: NullableIsoDate,
  lastUsedAt: NullableIsoDate,
  createdAt: IsoDate
}, { $id: 'ApiToken', title: 'ApiToken' })
export type ApiToken = Static<typeof ApiTokenSchema>

export const DashboardTokenResponseSchema = Type.Object({
  success: Type.Literal(true),
  access_token: Type.String(),
  expires_in: Type.Integer(),
  expires_at: IsoDate,
  token_type: Type.Literal('Bearer')
}, { title: 'DashboardTokenResponse', description: 'An access token for the user the Clerk session names' })

export const WebsocketTokenResponseSchema = Type.Object({
  token: Type.String({ description: 'Single-use ticket for GET /ws?token=' }),
  expires_in: Type.Integer()
}, { title: 'WebsocketTokenResponse', description: 'A single-use ticket for GET /ws?token=' })

export const CreateApiTokenBodySchema = Type.Object({
  userId: Type.Optional(Id),
  expiration: Type.Optional(Type.Union([Type.Null(), Text()], { description: 'ISO-8601 date in the future; null or absent: never expires' })),
  name: Type.Optional(Text({ maxLength: 200, description: 'A label for the token' })),
  scopes: Type.Optional(Type.Array(ApiScopeSchema, {
    minItems: 1,
    uniqueItems: true,
    maxItems: API_SCOPES.length,
    description: 'Limit the token to these scopes; absent: the token may do whatever its owner may'
  })),
  sendsPerMinute: Type.Optional(Type.Union([Type.Null(), Type.Integer({ minimum: 1, maximum: MAX_SEND_LIMIT })], {
    description: 'At most this many send requests a minute, shared by every process; null or absent: no limit of its own'
  })),
  sendQuota: Type.Optional(Type.Union([Type.Null(), Type.Integer({ minimum: 1, maximum: MAX_SEND_LIMIT })], {
    description: 'At most this many accepted send requests in all (one per request, whatever its recipients); null or absent: no quota'
  }))
}, { title: 'CreateApiTokenBody', description: 'Whom the token is for, when it expires, a label, its scopes and its send limits' })
export type CreateApiTokenBody = Static<typeof CreateApiTokenBodySchema>

export const CreateApiTokenResponseSchema = Type.Object({
  success: Type.Literal(true),
  token: Type.String(),
  name: Nullable(Type.String({ description: "The user's name" })),
  tokenId: Type.String(),
  expiresAt: NullableIsoDate,
  scopes: Nullable(Type.Array(ApiScopeSchema)),
  sendsPerMinute: Nullable(Type.Integer()),
  sendQuota: Nullable(Type.Integer())
}, { title: 'CreateApiTokenResponse', description: 'The API token (shown only here) and its record' })

export const ListApiTokensQuerySchema = Type.Object({ userId: Type.Optional(Id) })
export const ListApiTokensResponseSchema = Type.Object({
  success: Type.Literal(true),
  tokens: Type.Array(ApiTokenSchema)
}, { title: 'ListApiTokensResponse', description: 'Token records, never the tokens' })
export const TokenIdParamsSchema = Type.Object({ tokenId: Text({ minLength: 1, maxLength: 128 }) })
export const RevokeApiTokenResponseSchema = Type.Object({ success: Type.Literal(true), token: ApiTokenSchema }, { title: 'RevokeApiTokenResponse', description: 'The revoked token record' })

export const IntrospectBodySchema = Type.Object({
  token: Text({ minLength: 1, maxLength: 8192, description: 'The token to check' }),
  token_type_hint: Type.Optional(Text({ maxLength: 64, description: 'Accepted and ignored, as RFC 7662 allows' }))
}, { title: 'IntrospectBody', description: 'The token to check' })

export const INACTIVE_REASONS = ['expired', 'revoked', 'unknown', 'wrong_kind'] as const
export const IntrospectResponseSchema = Type.Object({
  active: Type.Boolean(),
  reason: Type.Optional(Type.Union(INACTIVE_REASONS.map(reason => Type.Literal(reason)), {
    description: 'Why an inactive token is inactive: expired, revoked, unknown (not ours, tampered, or no such token), wrong_kind (an access token or ticket)'
  })),
  sub: Type.Optional(Type.String()),
  scope: Type.Optional(Type.String({ description: 'Space-separated scopes; for an unscoped token, every scope its owner may use' })),
  exp: Type.Optional(Type.Integer()),
  iat: Type.Optional(Type.Integer()),
  jti: Type.Optional(Type.String()),
  iss: Type.Optional(Type.String()),
  aud: Type.Optional(Type.String()),
  token_type: Type.Optional(Type.Literal('api')),
  sends_per_minute: Type.Optional(Type.Integer({ description: 'The per-minute send limit; absent: none' })),
  send_quota: Type.Optional(Type.Integer({ description: 'The total send quota; absent: none' })),
  send_quota_remaining: Type.Optional(Type.Integer({ description: 'What is left of the send quota; absent: no quota' }))
}, { title: 'IntrospectResponse', description: 'RFC 7662 token introspection response' })
export type IntrospectResponse = Static<typeof IntrospectResponseSchema>
