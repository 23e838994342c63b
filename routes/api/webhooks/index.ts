import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import type { TSchema } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import type { Webhook } from 'svix'
import { ApiError, badRequest, unauthorized } from '../../../lib/errors.js'
import { errors } from '../../../schemas/common.js'
import type { UserInput } from '../../../schemas/users.js'
import {
  ClerkDeletedUserSchema, ClerkEventSchema, ClerkUserSchema, SvixHeadersSchema, WebhookAckSchema,
  type ClerkUser
} from '../../../schemas/webhooks.js'

const MAX_CREDITS = 2147483647

function checker<T extends TSchema> (schema: T) {
  const compiled = TypeCompiler.Compile(schema)
  /** The value typed by the schema, or a 400 naming the first mismatch. */
  return (value: unknown, what: string) => {
    if (compiled.Check(value)) return value
    const first = compiled.Errors(value).First()
    throw badRequest(`Not a valid ${what}`, first ? { path: first.path || '/', problem: first.message } : undefined)
  }
}
const asEvent = checker(ClerkEventSchema)
const asUser = checker(ClerkUserSchema)
const asDeletedUser = checker(ClerkDeletedUserSchema)

/** A delivery that changed nothing is still a 2xx: Clerk must not retry it. */
function ignored (request: FastifyRequest, event: string, outcome: string) {
  request.log.info({ event, outcome }, 'Clerk event not applied')
  return { success: true as const, ignored: true as const }
}

interface Verifier { webhook: Webhook, isVerificationError (error: unknown): error is Error }

/**
 * A svix verifier, or why there is none. An empty or garbled key would make signatures forgeable.
 * svix (its whole API client, some 250 modules) is loaded only when webhooks are configured.
 */
async function verifier (secret: string | undefined): Promise<Verifier | string> {
  if (!secret) return 'Clerk webhooks are not configured: set CLERK_WEBHOOK_SECRET'
  const key = secret.replace(/^whsec_/, '')
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(key) || Buffer.from(key, 'base64').length < 16) {
    return 'CLERK_WEBHOOK_SECRET is not a valid signing secret (copy it from the Clerk dashboard)'
  }
  const { Webhook, WebhookVerificationError } = await import('svix')
  return { webhook: new Webhook(secret), isVerificationError: (error): error is Error => error instanceof WebhookVerificationError }
}

/** `public_metadata` keys in snake_case, as the users table has them, or camelCase. */
function metadata (meta: Record<string, unknown>, snake: string, camel: string): unknown {
  return snake in meta ? meta[snake] : meta[camel]
}

/**
 * The user row a Clerk user maps to. Role and plan come from `public_metadata`,
 * which only Clerk's backend and dashboard can write (unlike `unsafe_metadata`).
 */
export function userInputFromClerk (user: ClerkUser): UserInput {
  const emails = user.email_addresses ?? []
  const primary = emails.find(e => e.id === user.primary_email_address_id) ?? emails[0]
  const fullName = [user.first_name, user.last_name].map(s => s?.trim()).filter(Boolean).join(' ')
  const meta = user.public_metadata ?? {}

  const input: UserInput = {
    clerk_id: user.id,
    email: primary?.email_address ?? null,
    name: fullName || user.username?.trim() || null,
    role: meta.role === 'admin' ? 'admin' : 'user'
  }
  const org = metadata(meta, 'organization_id', 'organizationId')
  if (org === null || (typeof org === 'string' && org !== '')) input.organization_id = org
  const plan = metadata(meta, 'plan_type', 'planType')
  if (typeof plan === 'string' && plan !== '') input.plan_type = plan
  const credits = typeof meta.credits === 'string' && /^\d+$/.test(meta.credits) ? Number(meta.credits) : meta.credits
  if (typeof credits === 'number' && Number.isInteger(credits) && credits >= 0 && credits <= MAX_CREDITS) input.credits = credits
  return input
}

/**
 * Clerk keeps the users table in sync through svix-signed webhooks. The signature
 * covers the exact bytes sent, so this scope keeps the JSON body as a string and
 * parses it only once the signature checks out. Clerk retries anything but a 2xx,
 * so events we do not handle are acknowledged and ignored. svix may deliver a
 * message twice or out of order, and a captured delivery verifies again within its
 * window: the store applies each delivery id once, skips events older than the
 * last one applied to the user, and never brings back a deleted user.
 */
const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  const { store, hub } = fastify
  const webhook = await verifier(fastify.config.CLERK_WEBHOOK_SECRET)
  if (typeof webhook === 'string' && fastify.config.CLERK_WEBHOOK_SECRET) fastify.log.error(webhook)

  fastify.removeContentTypeParser('application/json')
  fastify.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => { done(null, body) })

  fastify.post('/clerk', {
    schema: {
      tags: ['webhooks'],
      summary: 'Clerk user events (user.created, user.updated, user.deleted)',
      description: 'Signed by svix with CLERK_WEBHOOK_SECRET. Other event types are acknowledged and ignored, and so is a ' +
        'delivery already processed (same svix-id), an event older than the last one applied to the user, or one about a deleted user.',
      headers: SvixHeadersSchema,
      response: { 200: WebhookAckSchema, ...errors(400, 401, 409, 503) }
    }
  }, async (request) => {
    if (typeof webhook === 'string') throw new ApiError(503, 'WEBHOOK_NOT_CONFIGURED', webhook)

    const raw = typeof request.body === 'string' ? request.body : ''
    let payload: unknown
    try {
      payload = webhook.webhook.verify(raw, {
        'svix-id': request.headers['svix-id'] ?? '',
        'svix-timestamp': request.headers['svix-timestamp'] ?? '',
        'svix-signature': request.headers['svix-signature'] ?? ''
      })
    } catch (error) {
      if (webhook.isVerificationError(error)) throw unauthorized(`Invalid webhook signature: ${error.message}`)
      if (error instanceof SyntaxError) throw new ApiError(400, 'INVALID_JSON', 'Request body is not valid JSON')
      throw error
    }

    const event = asEvent(payload, 'Clerk event')
    // Verified above: the id and timestamp are the ones the signature covers.
    const deliveryId = request.headers['svix-id'] as string
    const sentAt = event.timestamp ?? Number(request.headers['svix-timestamp']) * 1000
    switch (event.type) {
      case 'user.created':
      case 'user.updated': {
        const clerkUser = asUser(event.data, 'Clerk user')
        const result = await store.applyClerkUserEvent({
          deliveryId,
          type: 'user.upsert',
          clerkId: clerkUser.id,
          eventAt: new Date(clerkUser.updated_at ?? sentAt),
          user: userInputFromClerk(clerkUser)
        })
        // Another writer (the CLI) took this clerk_id meanwhile; the delivery is not recorded, so Clerk's retry applies it.
        if (result.outcome === 'conflict') throw new ApiError(409, 'CONFLICT', 'The user changed concurrently, retry')
        if (!('user' in result)) return ignored(request, event.type, result.outcome)
        request.log.info({ event: event.type, userId: result.user.id, role: result.user.role }, 'user synced from Clerk')
        return { success: true as const }
      }
      case 'user.deleted': {
        const { id } = asDeletedUser(event.data, 'Clerk deleted user')
        const result = await store.applyClerkUserEvent({ deliveryId, type: 'user.deleted', clerkId: id, eventAt: new Date(sentAt) })
        if (!('deletedIds' in result)) return ignored(request, event.type, result.outcome)
        const { deletedIds } = result
        // The user is gone either way; a retry would not find them, so a delivery failure is logged, not returned.
        const closed = await Promise.allSettled(deletedIds.map(userId => hub.disconnectUser(userId, 4003, 'user removed')))
        for (const result of closed) {
          if (result.status === 'rejected') request.log.error({ err: result.reason }, 'could not close the sockets of a removed user')
        }
        request.log.info({ event: event.type, deletedIds }, 'user removed by Clerk')
        return { success: true as const }
      }
      default:
        return { success: true as const, ignored: true as const }
    }
  })
}
export default routes
