import { Type, type Static } from '@sinclair/typebox'
import { Id, IsoDate, Nullable, Text, Uuid } from './common.js'

export const StoredMessageSchema = Type.Object({
  id: Uuid,
  seq: Type.Integer(),
  senderId: Type.String(),
  content: Type.String(),
  templateId: Nullable(Uuid),
  createdAt: IsoDate,
  acked: Type.Boolean(),
  /** The id of the transaction that stored it, in inbox results only: the cursor's first half. */
  xact: Type.Optional(Type.String())
}, { $id: 'StoredMessage', title: 'StoredMessage' })
export type StoredMessage = Static<typeof StoredMessageSchema>

/** What the store returns for one accepted send. */
export interface SendResult {
  count: number
  /** One per distinct recipient; a send's messages share one id (before 20261122010000 each had its own). */
  messages: Array<{ id: string, recipientId: string }>
  /** Each message's place in its recipient's queue, in the order of `messages`; empty for a replayed send, which delivers nothing. */
  seqs: number[]
  createdAt: string
  replayed: boolean
  /** For a token with a send quota: the quota, and what is left of it after this send. */
  sendQuota?: number
  sendQuotaRemaining?: number
}

export interface SendInput {
  senderId: string
  senderOrganizationId: string | null
  senderIsAdmin: boolean
  recipientIds: string[]
  content: string
  templateId: string | null
  idempotencyKey: string | null
  requestHash: string | null
  /** The sending API token: its send quota, if it has one, pays for the send. */
  tokenId?: string | null
  /** Write only this many rows now, the rest in later chunks (absent: every row, in one transaction). */
  firstChunk?: number
  /** How long a chunked send holds its Idempotency-Key against retries, in seconds. */
  leaseSeconds?: number
}

export type SendOutcome =
  /**
   * `rest`: the send is accepted but its rows from recipient `from` on are still to be
   * written; `resumed`: taken over from a writer that died; `claim`: its hold on the key.
   */
  | { ok: true, result: SendResult, rest: { from: number, resumed: boolean, claim: string | null } | null }
  | { ok: false, error: 'invalid_recipients', ids: string[] }
  | { ok: false, error: 'idempotency_mismatch' }
  | { ok: false, error: 'quota_exhausted', sendQuota: number }
  | { ok: false, error: 'in_progress', retryAfter: number }

// No maxItems: MAX_RECIPIENTS is enforced after parsing with a clear 413, and BODY_LIMIT bounds the list.
export const RecipientIds = Type.Array(Id, { minItems: 1, description: 'User ids; duplicates are sent once' })
// No maxLength either: MAX_CONTENT_BYTES counts UTF-8 bytes and answers 413.
const Content = Text({ minLength: 1, description: 'At most MAX_CONTENT_BYTES bytes of UTF-8' })

export const SendHeadersSchema = Type.Object({
  'idempotency-key': Type.Optional(Type.String({
    minLength: 1,
    maxLength: 255,
    pattern: '^[\\x20-\\x7E]+$',
    description: 'A retry with the same key and body replays the first response and delivers nothing again; keys are kept 24 hours'
  }))
})
export type SendHeaders = Static<typeof SendHeadersSchema>

export const PlaceholderValue = Type.Union([Text(), Type.Number(), Type.Boolean()])

export const SendTemplateBodySchema = Type.Object({
  // A template's id or its name (unique within the organization); neither found is a 404.
  templateId: Text({ minLength: 1, maxLength: 200, description: "The template's id, or its name" }),
  recipientIds: RecipientIds,
  placeholders: Type.Optional(Type.Record(Type.String(), PlaceholderValue, { description: 'Values for the template\'s {{placeholders}}' }))
}, { title: 'SendTemplateBody', description: 'A stored template and the values of its placeholders, for many recipients' })
export type SendTemplateBody = Static<typeof SendTemplateBodySchema>

export const SendBulkBodySchema = Type.Object({
  recipientIds: RecipientIds,
  content: Content
}, { title: 'SendBulkBody', description: 'One message for many recipients' })
export type SendBulkBody = Static<typeof SendBulkBodySchema>

export const SendPrivateBodySchema = Type.Object({
  recipientId: Id,
  content: Content
}, { title: 'SendPrivateBody', description: 'One message for one recipient' })
export type SendPrivateBody = Static<typeof SendPrivateBodySchema>

export const SendResponseSchema = Type.Object({
  success: Type.Literal(true),
  count: Type.Integer({ description: 'Messages stored, one per distinct recipient' }),
  messages: Type.Array(Type.Object({ id: Uuid, recipientId: Type.String() }))
}, {
  $id: 'SendResponse',
  title: 'SendResponse',
  description: "Stored and delivered to connected recipients: one message per distinct recipient, all with the send's id (each recipient acknowledges it for themselves)"
})
export type SendResponse = Static<typeof SendResponseSchema>

export const InboxQuerySchema = Type.Object({
  after: Type.Optional(Text({ minLength: 1, maxLength: 64, description: 'The nextCursor of a previous page; absent: from the oldest message' })),
  limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 })
})
export type InboxQuery = Static<typeof InboxQuerySchema>

export const InboxMessageSchema = Type.Omit(StoredMessageSchema, ['seq', 'xact'], { $id: 'InboxMessage', title: 'InboxMessage' })

export const InboxResponseSchema = Type.Object({
  success: Type.Literal(true),
  messages: Type.Array(InboxMessageSchema),
  nextCursor: Nullable(Type.String({ description: 'Pass as `after` for the next page; null when there is nothing yet' }))
}, { title: 'InboxResponse', description: 'A page of the caller\'s messages, oldest first, acknowledged ones too' })

export const AckBodySchema = Type.Object({
  ids: Type.Array(Uuid, { minItems: 1, maxItems: 1000 })
}, { title: 'AckBody', description: 'Ids of messages the caller received' })
export type AckBody = Static<typeof AckBodySchema>

export const AckResponseSchema = Type.Object({
  success: Type.Literal(true),
  acked: Type.Integer({ description: 'Messages newly acknowledged' })
}, { title: 'AckResponse', description: 'How many messages were newly acknowledged' })
