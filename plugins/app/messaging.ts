import fp from 'fastify-plugin'
import { createHash } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { ApiError, unprocessable } from '../../lib/errors.js'
import type { Caller } from './auth.js'
import type { SendResult } from '../../schemas/messages.js'
import { batchOf } from './websocket/index.js'

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
  /** Stores one send in one write, then hands it to delivery; a replayed send delivers nothing. */
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
      tokenId: caller.tokenId ?? null
    })
    if (!outcome.ok) {
      if (outcome.error === 'quota_exhausted') throw quotaExhausted(outcome.sendQuota)
      if (outcome.error === 'idempotency_mismatch') {
        throw unprocessable('IDEMPOTENCY_KEY_REUSED', 'This Idempotency-Key was already used with a different request')
      }
      throw unprocessable('INVALID_RECIPIENTS', `${outcome.ids.length} recipient(s) are unknown or outside your organization; nothing was sent`,
        { invalidRecipientIds: outcome.ids })
    }

    const { result } = outcome
    if (!result.replayed) {
      try {
        await fastify.hub.publish(batchOf({ senderId: user.id, content, templateId }, result))
      } catch (err) {
        // Stored messages are replayed when their recipients (re)connect, so the send still succeeded.
        log.error({ err, senderId: user.id, count: result.count }, 'live delivery failed; messages stay stored for replay')
      }
    }
    return result
  }

  fastify.decorate('messaging', { send } satisfies Messaging)
}, { name: 'messaging', dependencies: ['supabase', 'hub'] })
