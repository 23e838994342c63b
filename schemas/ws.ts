import { Type, type Static } from '@sinclair/typebox'
import { IsoDate } from './common.js'

/** Close codes a client may see; the 4000s are ours (RFC 6455 leaves 4000-4999 to applications). */
export const WsClose = {
  /** The server is draining: reconnect, possibly to another node. */
  GOING_AWAY: 1001,
  /** A frame was not JSON or not a known client frame. */
  POLICY_VIOLATION: 1008,
  /** A frame was larger than 64 KiB. */
  MESSAGE_TOO_BIG: 1009,
  /** The store could not be read; reconnect later. */
  TRY_AGAIN_LATER: 1013,
  /** The credential the socket was opened with expired: fetch a new ticket. */
  TOKEN_EXPIRED: 4001,
  /** Access revoked or user removed: do not reconnect. */
  REVOKED: 4003,
  /** The client read too slowly; unacknowledged messages are replayed on reconnect. */
  SLOW_CONSUMER: 4008
} as const

/** Ack ids are message ids; a pattern keeps the check free of format registries. */
const MessageId = Type.String({ pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' })

/** What each close code means for a client, for the AsyncAPI document. */
export const WS_CLOSE_DESCRIPTIONS: Record<number, string> = {
  [WsClose.GOING_AWAY]: 'The server is draining (deploy or restart): reconnect, another process takes the socket',
  [WsClose.POLICY_VIOLATION]: 'A frame that is not JSON, not a known client frame, or binary',
  [WsClose.MESSAGE_TOO_BIG]: 'A frame over 64 KiB',
  [WsClose.TRY_AGAIN_LATER]: 'The store failed while replaying: reconnect later',
  [WsClose.TOKEN_EXPIRED]: 'The access token the socket was opened with expired: get a new one, then a new ticket',
  [WsClose.REVOKED]: 'Access revoked or user removed: do not reconnect',
  [WsClose.SLOW_CONSUMER]: 'The client read too slowly; unacknowledged messages are replayed on reconnect'
}

export const MAX_ACK_IDS = 1000

export const AckFrameSchema = Type.Object({
  type: Type.Literal('ack'),
  ids: Type.Array(MessageId, { minItems: 1, maxItems: MAX_ACK_IDS })
}, { additionalProperties: false, title: 'AckFrame', description: 'Acknowledges messages: they are not replayed on any later socket' })
export type AckFrame = Static<typeof AckFrameSchema>

export const PingFrameSchema = Type.Object({ type: Type.Literal('ping') }, { additionalProperties: false, title: 'PingFrame', description: 'Answered by a pong frame' })

export const ClientFrameSchema = Type.Union([AckFrameSchema, PingFrameSchema], { $id: 'WsClientFrame', title: 'WsClientFrame' })
export type ClientFrame = Static<typeof ClientFrameSchema>

// Server frames are built as strings (plugins/app/websocket/frames.ts); these schemas document them and tests check them.
export const ReadyFrameSchema = Type.Object({ type: Type.Literal('ready'), userId: Type.String() }, {
  additionalProperties: false, title: 'ReadyFrame', description: 'Sent once, first: the socket is authenticated and replay begins'
})
export type ReadyFrame = Static<typeof ReadyFrameSchema>

export const MessageFrameSchema = Type.Object({
  type: Type.Literal('message'),
  id: Type.String({ format: 'uuid', description: "The send's id: unique among this user's messages, the same for every recipient of one send; acknowledge by it" }),
  senderId: Type.String(),
  content: Type.String(),
  templateId: Type.Optional(Type.String({ format: 'uuid' })),
  createdAt: IsoDate
}, {
  additionalProperties: false,
  title: 'MessageFrame',
  description: 'A message: unacknowledged ones first, oldest first, then live ones; at least once, so de-duplicate by id'
})
export type MessageFrame = Static<typeof MessageFrameSchema>

export const PongFrameSchema = Type.Object({ type: Type.Literal('pong') }, { additionalProperties: false, title: 'PongFrame', description: 'The answer to a ping frame' })

export const ServerFrameSchema = Type.Union([ReadyFrameSchema, MessageFrameSchema, PongFrameSchema], { $id: 'WsServerFrame', title: 'WsServerFrame' })
export type ServerFrame = Static<typeof ServerFrameSchema>

export const WsQuerySchema = Type.Object({
  token: Type.Optional(Type.String({ description: 'A single-use ws ticket from GET /websocket-token/' }))
})
export type WsQuery = Static<typeof WsQuerySchema>
