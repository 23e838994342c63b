import { Type, type Static } from '@sinclair/typebox'
import { Id, IsoDate, NullableIsoDate, Nullable, Text } from './common.js'

export const ApiTokenSchema = Type.Object({
  id: Type.String({ description: 'The token id (its jti); never the token itself' }),
  userId: Type.String(),
  createdBy: Nullable(Type.String()),
  name: Nullable(Type.String()),
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
  name: Type.Optional(Text({ maxLength: 200, description: 'A label for the token' }))
}, { title: 'CreateApiTokenBody', description: 'Whom the token is for, when it expires, and a label' })
export type CreateApiTokenBody = Static<typeof CreateApiTokenBodySchema>

export const CreateApiTokenResponseSchema = Type.Object({
  success: Type.Literal(true),
  token: Type.String(),
  name: Nullable(Type.String({ description: "The user's name" })),
  tokenId: Type.String(),
  expiresAt: NullableIsoDate
}, { title: 'CreateApiTokenResponse', description: 'The API token (shown only here) and its record' })

export const ListApiTokensQuerySchema = Type.Object({ userId: Type.Optional(Id) })
export const ListApiTokensResponseSchema = Type.Object({
  success: Type.Literal(true),
  tokens: Type.Array(ApiTokenSchema)
}, { title: 'ListApiTokensResponse', description: 'Token records, never the tokens' })
export const TokenIdParamsSchema = Type.Object({ tokenId: Text({ minLength: 1, maxLength: 128 }) })
export const RevokeApiTokenResponseSchema = Type.Object({ success: Type.Literal(true), token: ApiTokenSchema }, { title: 'RevokeApiTokenResponse', description: 'The revoked token record' })
