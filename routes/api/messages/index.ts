import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { ApiError, badRequest, unauthorized } from '../../../lib/errors.js'
import { renderTemplate } from '../../../plugins/app/messaging.js'
import type { Caller } from '../../../plugins/app/auth.js'
import { templateScope, type InboxPosition } from '../../../plugins/app/supabase/store.js'
import { errors, Security } from '../../../schemas/common.js'
import type { SendResult } from '../../../schemas/messages.js'
import {
  AckBodySchema, AckResponseSchema, InboxQuerySchema, InboxResponseSchema, SendBulkBodySchema,
  SendHeadersSchema, SendPrivateBodySchema, SendResponseSchema, SendTemplateBodySchema
} from '../../../schemas/messages.js'

const UNAUTHORIZED = 'Unauthorized: Missing or invalid token'

/**
 * Inbox cursors are opaque to clients: `x<xact>.<seq>`, the position of the last
 * message read in commit order. `m<seq>` cursors, from before commit order, are
 * still accepted (the store resumes conservatively from them).
 */
export function encodeCursor (position: InboxPosition): string {
  const text = position.xact === null ? `m${position.seq}` : `x${position.xact}.${position.seq}`
  return Buffer.from(text).toString('base64url')
}
export function decodeCursor (cursor: string): InboxPosition {
  const match = /^(?:m|x(\d{1,19})\.)(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'))
  const position = match ? { xact: match[1] ?? null, seq: Number(match[2]) } : null
  if (!position || encodeCursor(position) !== cursor) throw badRequest('Invalid cursor: pass the nextCursor of a previous page')
  return position
}

function callerOf (request: FastifyRequest): Caller {
  if (!request.caller) throw unauthorized(UNAUTHORIZED)
  return request.caller
}

function sent (reply: FastifyReply, result: SendResult) {
  if (result.replayed) reply.header('idempotent-replayed', 'true')
  if (result.sendQuota !== undefined) quotaHeaders(reply, result.sendQuota, result.sendQuotaRemaining ?? 0)
  return { success: true as const, count: result.count, messages: result.messages }
}

/** What is left of the sending token's quota (a replay tells what was left after the first send). */
function quotaHeaders (reply: FastifyReply, quota: number, remaining: number) {
  reply.header('x-send-quota-limit', quota)
  reply.header('x-send-quota-remaining', remaining)
}

type SendRequest = FastifyRequest<{ Headers: { 'idempotency-key'?: string } }>

const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  const { messaging, store } = fastify
  const sender = fastify.authenticate({ kinds: ['api'], message: UNAUTHORIZED })
  const reader = fastify.authenticate({ kinds: ['access', 'api'], message: UNAUTHORIZED })
  const sendResponses = { 200: SendResponseSchema, ...errors(400, 401, 403, 409, 413, 415, 422, 429, 500, 503) }

  /** The three send routes differ only in how they build recipients and content. */
  async function send (request: SendRequest, reply: FastifyReply, route: string, message: { recipientIds: string[], content: string, templateId?: string }) {
    try {
      const result = await messaging.send({
        caller: callerOf(request),
        ...message,
        idempotencyKey: request.headers['idempotency-key'] ?? null,
        request: { route, body: request.body }
      })
      return sent(reply, result)
    } catch (error) {
      if (error instanceof ApiError && error.code === 'QUOTA_EXHAUSTED') quotaHeaders(reply, Number(error.details?.sendQuota), 0)
      if (error instanceof ApiError && error.code === 'IDEMPOTENCY_KEY_IN_USE') reply.header('retry-after', Number(error.details?.retryAfterSeconds))
      throw error
    }
  }

  fastify.post('/send-template', {
    onRequest: sender,
    preValidation: fastify.requireScope('messages:send-template'),
    preHandler: fastify.limitSends,
    schema: {
      summary: 'Send a stored template, with its placeholders filled, to many recipients',
      tags: ['messages'],
      security: Security.api,
      headers: SendHeadersSchema,
      body: SendTemplateBodySchema,
      response: { ...sendResponses, ...errors(404) }
    }
  }, async function sendTemplate (request, reply) {
    const caller = callerOf(request)
    const { templateId, recipientIds, placeholders } = request.body
    const template = await store.findTemplate(templateScope(caller.user), templateId)
    if (!template) throw new ApiError(404, 'TEMPLATE_NOT_FOUND', 'Template not found')
    // Messages record the template's id, whichever way the request named it.
    return await send(request, reply, 'send-template', { recipientIds, content: renderTemplate(template.content, placeholders), templateId: template.id })
  })

  fastify.post('/send-bulk', {
    onRequest: sender,
    preValidation: fastify.requireScope('messages:send-bulk'),
    preHandler: fastify.limitSends,
    schema: {
      summary: 'Send one message to many recipients',
      tags: ['messages'],
      security: Security.api,
      headers: SendHeadersSchema,
      body: SendBulkBodySchema,
      response: sendResponses
    }
  }, async function sendBulk (request, reply) {
    const { recipientIds, content } = request.body
    return await send(request, reply, 'send-bulk', { recipientIds, content })
  })

  fastify.post('/send-private', {
    onRequest: sender,
    preValidation: fastify.requireScope('messages:send-private'),
    preHandler: fastify.limitSends,
    schema: {
      summary: 'Send one message to one recipient',
      tags: ['messages'],
      security: Security.api,
      headers: SendHeadersSchema,
      body: SendPrivateBodySchema,
      response: sendResponses
    }
  }, async function sendPrivate (request, reply) {
    const { recipientId, content } = request.body
    return await send(request, reply, 'send-private', { recipientIds: [recipientId], content })
  })

  fastify.get('/inbox', {
    onRequest: reader,
    preValidation: fastify.requireScope('inbox:read'),
    schema: {
      summary: "The caller's messages, oldest first, acknowledged or not (for clients without a socket)",
      tags: ['messages'],
      security: Security.accessOrApi,
      querystring: InboxQuerySchema,
      response: { 200: InboxResponseSchema, ...errors(400, 401, 403, 429, 500, 503) }
    }
  }, async function inbox (request, reply) {
    const { after, limit } = request.query
    reply.header('cache-control', 'no-store')
    const position = after === undefined ? null : decodeCursor(after)
    const messages = await store.inbox(callerOf(request).user.id, position, limit)
    const last = messages.at(-1)
    return { success: true as const, messages, nextCursor: last ? encodeCursor({ xact: last.xact ?? null, seq: last.seq }) : after ?? null }
  })

  fastify.post('/ack', {
    onRequest: reader,
    preValidation: fastify.requireScope('inbox:read'),
    schema: {
      summary: 'Acknowledge received messages; acknowledged messages are not replayed on a socket',
      tags: ['messages'],
      security: Security.accessOrApi,
      body: AckBodySchema,
      response: { 200: AckResponseSchema, ...errors(400, 401, 403, 413, 415, 429, 500, 503) }
    }
  }, async function ack (request) {
    const acked = await store.ack(callerOf(request).user.id, [...new Set(request.body.ids)])
    return { success: true as const, acked }
  })
}

export default routes
