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

/** Response map entries for the errors a route can produce, keyed by status. */
export function errors (...statuses: number[]): Record<number, typeof ErrorSchema> {
  return Object.fromEntries(statuses.map(s => [s, ErrorSchema]))
}
