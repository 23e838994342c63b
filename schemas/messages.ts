import { Type, type Static } from '@sinclair/typebox'
import { Id, IsoDate, Nullable, Uuid } from './common.js'

export const StoredMessageSchema = Type.Object({
  id: Uuid,
  seq: Type.Integer(),
  senderId: Type.String(),
  content: Type.String(),
  templateId: Nullable(Uuid),
  createdAt: IsoDate,
  acked: Type.Boolean()
}, { $id: 'StoredMessage', title: 'StoredMessage' })
export type StoredMessage = Static<typeof StoredMessageSchema>

/** What the store returns for one accepted send. */
export interface SendResult {
  count: number
  messages: Array<{ id: string, recipientId: string, seq: number }>
  createdAt: string
  replayed: boolean
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
}

export type SendOutcome =
  | { ok: true, result: SendResult }
  | { ok: false, error: 'invalid_recipients', ids: string[] }
  | { ok: false, error: 'idempotency_mismatch' }

export const RecipientIds = Type.Array(Id, { minItems: 1 })
