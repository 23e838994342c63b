import fp from 'fastify-plugin'
import { createHash } from 'node:crypto'
import { setImmediate as turn } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { ApiError, unprocessable } from '../../lib/errors.js'
import type { Caller } from './auth.js'
import type { SendResult } from '../../schemas/messages.js'
import { batchOf, type MessageBatch } from './websocket/index.js'

export interface SendRequest {
  caller: Caller
  recipientIds: string[]
  content: string
  templateId?: string | null
  idempotencyKey?: string | null
  /** What the client sent, hashed to recognise a retry; defaults to the fields above. */
  request?: { route: string, body: unknown }
}

export interface Messaging {
  /**
   * Stores a send and hands it to delivery; a large one in growing chunks, each delivered
   * as soon as it commits. Answers once every chunk committed; a replayed send delivers nothing.
   */
  send (request: SendRequest): Promise<SendResult>
}

declare module 'fastify' {
  interface FastifyInstance {
    messaging: Messaging
  }
}

/** Text already rendered, waiting on the stack of canonicalJson. */
class Piece { constructor (readonly text: string) {} }

/**
 * JSON with object keys sorted at every level, so equal bodies hash equally whatever
 * their key order. Iterative: a body nested 100,000 levels deep must not overflow the stack.
 */
export function canonicalJson (root: unknown): string {
  let out = ''
  const stack: unknown[] = [root]
  while (stack.length > 0) {
    const value = stack.pop()
    if (value instanceof Piece) {
      out += value.text
    } else if (Array.isArray(value)) {
      // Pushed in reverse: popped as `[`, item, `,`, item, …, `]`.
      stack.push(new Piece(']'))
      for (let i = value.length - 1; i >= 0; i--) {
        stack.push(value[i])
        if (i > 0) stack.push(new Piece(','))
      }
      out += '['
    } else if (value !== null && typeof value === 'object') {
      const entries = Object.entries(value as Record<string, unknown>)
        .filter(([, v]) => v !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      stack.push(new Piece('}'))
      for (let i = entries.length - 1; i >= 0; i--) {
        stack.push(entries[i][1], new Piece(`${i > 0 ? ',' : ''}${JSON.stringify(entries[i][0])}:`))
      }
      out += '{'
    } else {
      out += JSON.stringify(value) ?? 'null'
    }
  }
  return out
}

/** 413 when `content` is over `maxBytes` bytes of UTF-8 (messages and templates share the cap). */
export function assertContentSize (content: string, maxBytes: number): void {
  const bytes = Buffer.byteLength(content, 'utf8')
  if (bytes > maxBytes) {
    throw new ApiError(413, 'CONTENT_TOO_LARGE', `Content too large: at most ${maxBytes} bytes of UTF-8, got ${bytes}`,
      { maxContentBytes: maxBytes, contentBytes: bytes })
  }
}

export const requestHash = (route: string, body: unknown) =>
  createHash('sha256').update(canonicalJson({ route, body })).digest('hex')

/** A token's send quota is spent for good: no Retry-After, as waiting will not help. */
export const quotaExhausted = (sendQuota: number) =>
  new ApiError(429, 'QUOTA_EXHAUSTED', `This token's send quota of ${sendQuota} is used up; nothing was sent`,
    { sendQuota, sendQuotaRemaining: 0 })

const PLACEHOLDER = /\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}/g

/**
 * Fills `{{name}}` (spaces inside the braces allowed) in one pass, so values are
 * never themselves expanded. Every placeholder without a value is named in one 422.
 */
export function renderTemplate (content: string, values: Record<string, string | number | boolean> = {}): string {
  const missing = new Set<string>()
  const rendered = content.replace(PLACEHOLDER, (match, name: string) => {
    if (Object.hasOwn(values, name)) return String(values[name])
    missing.add(name)
    return match
  })
  if (missing.size > 0) {
    const names = [...missing]
    throw unprocessable('MISSING_PLACEHOLDERS', `Missing placeholder value(s): ${names.join(', ')}`, { missingPlaceholders: names })
  }
  return rendered
}

/** Each chunk after the first is this many times the one before, up to MAX_CHUNK rows. */
const CHUNK_GROWTH = 4
const MAX_CHUNK = 20_000
/** How long a chunked send holds its Idempotency-Key; a retry after that takes over (the writer died). */
export const SEND_LEASE_SECONDS = 30

/** [start, end) of the chunks after `from`: sizes growing geometrically from first × CHUNK_GROWTH. */
export function chunksAfter (from: number, total: number, first: number): Array<[number, number]> {
  const chunks: Array<[number, number]> = []
  let size = first
  for (let start = from; start < total; start += size) {
    size = Math.min(size * CHUNK_GROWTH, MAX_CHUNK)
    chunks.push([start, Math.min(start + size, total)])
  }
  return chunks
}

export default fp(async function messaging (fastify: FastifyInstance) {
  const { config, store, log } = fastify

  async function send ({ caller, recipientIds, content, templateId = null, idempotencyKey = null, request }: SendRequest): Promise<SendResult> {
    const recipients = [...new Set(recipientIds)]
    if (recipients.length > config.MAX_RECIPIENTS) {
      throw new ApiError(413, 'TOO_MANY_RECIPIENTS', `Too many recipients: at most ${config.MAX_RECIPIENTS} per send, got ${recipients.length}`,
        { maxRecipients: config.MAX_RECIPIENTS, recipients: recipients.length })
    }
    assertContentSize(content, config.MAX_CONTENT_BYTES)

    const { user } = caller
    const outcome = await store.send({
      senderId: user.id,
      senderOrganizationId: user.organizationId,
      senderIsAdmin: user.role === 'admin',
      recipientIds: recipients,
      content,
      templateId,
      idempotencyKey,
      requestHash: idempotencyKey === null
        ? null
        : requestHash(request?.route ?? 'send', request?.body ?? { recipientIds, content, templateId }),
      tokenId: caller.tokenId ?? null,
      // 0 (the default): every send is one transaction.
      ...(config.SEND_FIRST_CHUNK > 0 ? { firstChunk: config.SEND_FIRST_CHUNK, leaseSeconds: SEND_LEASE_SECONDS } : {})
    })
    if (!outcome.ok) {
      if (outcome.error === 'quota_exhausted') throw quotaExhausted(outcome.sendQuota)
      if (outcome.error === 'idempotency_mismatch') {
        throw unprocessable('IDEMPOTENCY_KEY_REUSED', 'This Idempotency-Key was already used with a different request')
      }
      if (outcome.error === 'in_progress') {
        throw new ApiError(409, 'IDEMPOTENCY_KEY_IN_USE', 'A send with this Idempotency-Key is still being stored; retry later',
          { retryAfterSeconds: outcome.retryAfter })
      }
      throw unprocessable('INVALID_RECIPIENTS', `${outcome.ids.length} recipient(s) are unknown or outside your organization; nothing was sent`,
        { invalidRecipientIds: outcome.ids })
    }

    const { result, rest } = outcome
    if (result.replayed) return result
    const message = { senderId: user.id, content, templateId }
    if (rest === null) {
      await deliver(batchOf(message, result))
      return result
    }

    // The send is decided and its first chunk committed: the rest is written chunk by
    // chunk, each delivered while the next one is being written.
    const id = result.messages[0].id
    const batch = (written: string[], seqs: number[]): MessageBatch => ({
      ...message, createdAt: result.createdAt, messages: written.map((recipientId, i) => ({ id, recipientId, seq: seqs[i] }))
    })
    const write = ([start, end]: [number, number]) => {
      const written = store.sendMore({
        id,
        senderId: user.id,
        recipientIds: recipients.slice(start, end),
        idempotencyKey,
        leaseSeconds: SEND_LEASE_SECONDS,
        claim: rest.claim,
        resumed: rest.resumed
      })
      // Awaited below, after a turn of the event loop: a failure meanwhile is not an unhandled rejection.
      written.catch(() => {})
      return written
    }
    const chunks = chunksAfter(rest.from, recipients.length, config.SEND_FIRST_CHUNK)
    const deliveries: Array<Promise<void>> = []
    const seqs = [...result.seqs]
    const skipped: string[] = []
    const writeRest = async () => {
      let next = write(chunks[0])
      // One turn of the event loop first: the next chunk's query goes out before the frames are built.
      await turn()
      if (rest.from > 0) deliveries.push(deliver(batch(recipients.slice(0, rest.from), result.seqs)))
      for (let i = 0; i < chunks.length; i++) {
        const chunk = await next
        if (i + 1 < chunks.length) {
          next = write(chunks[i + 1])
          await turn()
        }
        seqs.push(...chunk.seqs)
        skipped.push(...chunk.skipped)
        deliveries.push(deliver(batch(chunk.recipients, chunk.seqs)))
      }
    }
    try {
      const written = writeRest()
      fastify.hub.deferAcksDuring(written)
      await written
    } catch (error) {
      // Whatever committed stays stored (and is replayed on reconnect); a retry with the key completes the rest.
      if (idempotencyKey !== null) await store.finishSend(user.id, idempotencyKey, null).catch(() => {})
      throw error
    }

    const gone = new Set(skipped)
    const response = {
      id,
      count: recipients.length - skipped.length,
      createdAt: result.createdAt,
      ...(result.sendQuota === undefined ? {} : { sendQuota: result.sendQuota, sendQuotaRemaining: result.sendQuotaRemaining }),
      ...(skipped.length > 0 ? { skipped } : {})
    }
    if (idempotencyKey !== null) await store.finishSend(user.id, idempotencyKey, response)
    await Promise.all(deliveries)
    return {
      ...result,
      count: response.count,
      messages: recipients.filter(r => !gone.has(r)).map(recipientId => ({ id, recipientId })),
      seqs
    }
  }

  /** Live delivery; stored messages are replayed when their recipients (re)connect, so a failure here loses nothing. */
  async function deliver (batch: MessageBatch): Promise<void> {
    try {
      await fastify.hub.publish(batch)
    } catch (err) {
      log.error({ err, senderId: batch.senderId, count: batch.messages.length }, 'live delivery failed; messages stay stored for replay')
    }
  }

  fastify.decorate('messaging', { send } satisfies Messaging)
}, { name: 'messaging', dependencies: ['supabase', 'hub'] })
