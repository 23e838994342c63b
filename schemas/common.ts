import { Type, type Static, type StringOptions, type TSchema } from '@sinclair/typebox'

/** The one error envelope every route returns; it satisfies all three client documents. */
export const ErrorSchema = Type.Object({
  success: Type.Literal(false),
  statusCode: Type.Integer(),
  /** The same as statusCode: the admin document's clients read `status`. */
  status: Type.Integer(),
  code: Type.String(),
  error: Type.String(),
  message: Type.String(),
  details: Type.Optional(Type.Record(Type.String(), Type.Unknown()))
}, { $id: 'Error', title: 'Error' })
export type ErrorBody = Static<typeof ErrorSchema>

/** Postgres cannot store NUL (U+0000) in text or jsonb: every text field of a body excludes it. */
export const NO_NUL = '^[^\\u0000]*$'
/** A string field of a request body: any text but NUL. */
export const Text = (options: StringOptions = {}) => Type.String({ ...options, pattern: NO_NUL })

export const IsoDate = Type.String({ format: 'date-time' })
export const NullableIsoDate = Type.Union([Type.Null(), IsoDate])
// Null first: with type coercion on, Ajv would otherwise turn null into "" for the string branch.
export const Nullable = <T extends TSchema>(schema: T) => Type.Union([Type.Null(), schema])

/** Ids are opaque strings (the existing product uses both uuids and other ids). */
export const Id = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.:@-]+$' })
const ID = new RegExp(Id.pattern as string)
/** The same rule outside a schema (the CLI names ids the API must accept). */
export const isId = (value: string) => value.length <= (Id.maxLength as number) && ID.test(value)
export const Uuid = Type.String({ format: 'uuid' })

export const BearerHeaders = Type.Object({
  authorization: Type.Optional(Type.String({ description: 'Bearer <token>' }))
})

/** What each error status means, for the OpenAPI document; every one answers the Error envelope. */
export const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'Bad input (`VALIDATION_ERROR` names the field, or `BAD_REQUEST`); nothing changed',
  401: 'Missing, invalid, expired or revoked token, or a token of the wrong kind',
  403: 'The token is valid but not allowed here (not an administrator, or a cookie from an origin not in CORS_ORIGINS)',
  404: 'Not found',
  409: 'Conflict with what is stored; nothing changed',
  413: 'Body, recipient list or content over its limit',
  415: 'Unsupported Content-Type: send application/json',
  422: 'Understood but not acceptable (unknown recipients, missing placeholders, an Idempotency-Key reused with another body); nothing stored',
  426: 'A plain HTTP request to a WebSocket-only endpoint',
  429: 'Rate limited (or too many sockets): retry later',
  500: 'Unexpected server error',
  503: 'A dependency (store, Redis, Clerk) is unavailable or the server is draining: retry after Retry-After; nothing was stored'
}

/** The Error envelope by reference, with the meaning of one status. */
export const errorResponse = (status: number, description = ERROR_DESCRIPTIONS[status] ?? 'Error') =>
  Type.Unsafe<ErrorBody>({ $ref: 'Error#', description })

/** Response map entries for the errors a route can produce, keyed by status. */
export function errors (...statuses: number[]): Record<number, ReturnType<typeof errorResponse>> {
  return Object.fromEntries(statuses.map(s => [s, errorResponse(s)]))
}

/**
 * OpenAPI security requirements, one per way a route accepts a caller (any one
 * listed suffices). The schemes are declared in plugins/external/swagger.ts.
 */
const requirements = (...schemes: string[]): Array<Record<string, string[]>> => schemes.map(scheme => ({ [scheme]: [] }))
export const Security = {
  /** An access token: dashboard exchange or `cli tokens access`. */
  access: requirements('accessToken'),
  /** An access token, or the browser's access_token cookie. */
  accessOrCookie: requirements('accessToken', 'accessTokenCookie'),
  /** An API token minted by an administrator. */
  api: requirements('apiToken'),
  /** Either an access token or an API token. */
  accessOrApi: requirements('accessToken', 'apiToken'),
  /** A Clerk session token. */
  clerk: requirements('clerkSession')
}
