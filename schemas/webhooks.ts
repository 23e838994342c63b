import { Type, type Static } from '@sinclair/typebox'
import { Nullable, Text } from './common.js'

/** The largest time a JavaScript Date holds. */
const MAX_EPOCH_MS = 8.64e15

/** The svix signature headers Clerk sends with every delivery. */
export const SvixHeadersSchema = Type.Object({
  'svix-id': Type.Optional(Type.String({ maxLength: 256, description: 'The delivery id; each is applied at most once' })),
  'svix-timestamp': Type.Optional(Type.String({ description: 'Seconds since epoch; deliveries older than 5 minutes are refused' })),
  'svix-signature': Type.Optional(Type.String({ description: 'Space-separated `v1,<base64 HMAC-SHA256>` signatures' }))
})

/** The envelope of every Clerk webhook event; `data` depends on `type`. */
export const ClerkEventSchema = Type.Object({
  type: Text({ minLength: 1 }),
  object: Type.Optional(Text()),
  data: Type.Record(Type.String(), Type.Unknown()),
  timestamp: Type.Optional(Type.Number({ minimum: 0, maximum: MAX_EPOCH_MS, description: 'When the event happened, ms since epoch' })),
  instance_id: Type.Optional(Text())
})
export type ClerkEvent = Static<typeof ClerkEventSchema>

/** The fields of Clerk's UserJSON that gatehouse keeps (`user.created`, `user.updated`). */
export const ClerkUserSchema = Type.Object({
  id: Text({ minLength: 1, maxLength: 128 }),
  username: Type.Optional(Nullable(Text())),
  first_name: Type.Optional(Nullable(Text())),
  last_name: Type.Optional(Nullable(Text())),
  primary_email_address_id: Type.Optional(Nullable(Text())),
  email_addresses: Type.Optional(Type.Array(Type.Object({
    id: Text(),
    email_address: Text()
  }))),
  public_metadata: Type.Optional(Nullable(Type.Record(Type.String(), Type.Unknown()))),
  updated_at: Type.Optional(Type.Number({ minimum: 0, maximum: MAX_EPOCH_MS, description: 'ms since epoch; orders the events of one user' }))
})
export type ClerkUser = Static<typeof ClerkUserSchema>

/** Clerk's DeletedObjectJSON (`user.deleted`). */
export const ClerkDeletedUserSchema = Type.Object({
  id: Text({ minLength: 1, maxLength: 128 }),
  deleted: Type.Optional(Type.Boolean())
})
export type ClerkDeletedUser = Static<typeof ClerkDeletedUserSchema>

export const WebhookAckSchema = Type.Object({
  success: Type.Literal(true),
  ignored: Type.Optional(Type.Literal(true, {
    description: 'Nothing changed: the event type is not one gatehouse handles, the delivery was already processed, ' +
      'it is older than the last event applied to the user, or the user was deleted'
  }))
}, { title: 'WebhookAck', description: 'The delivery was applied, or acknowledged and ignored (see `ignored`)' })
export type WebhookAck = Static<typeof WebhookAckSchema>
