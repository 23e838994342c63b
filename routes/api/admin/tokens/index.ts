import { randomUUID } from 'node:crypto'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { badRequest, notFound } from '../../../../lib/errors.js'
import { parseIsoDate } from '../../../../lib/dates.js'
import { BearerHeaders, errors, Security } from '../../../../schemas/common.js'
import {
  CreateApiTokenBodySchema, CreateApiTokenResponseSchema, ListApiTokensQuerySchema, ListApiTokensResponseSchema,
  RevokeApiTokenResponseSchema, TokenIdParamsSchema
} from '../../../../schemas/tokens.js'

/** Parses the optional expiration: absent or null never expires; otherwise a future ISO-8601 date. */
function parseExpiration (expiration: string | null | undefined): Date | null {
  if (expiration === undefined || expiration === null) return null
  const date = parseIsoDate(expiration)
  if (date === null) throw badRequest('expiration must be an ISO-8601 date or null')
  if (date.getTime() <= Date.now()) throw badRequest('expiration must be in the future')
  return date
}

/** Administrators mint, list and revoke API tokens for the messaging API. */
const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  // Authorization before validation: a non-admin learns nothing about the request format.
  fastify.addHook('onRequest', fastify.authenticate({ kinds: ['access', 'api'] }))
  fastify.addHook('preValidation', fastify.requireAdmin)
  fastify.addHook('preValidation', fastify.requireScope('tokens:admin'))

  fastify.post('/', {
    schema: {
      tags: ['admin'],
      description: 'Administrators only: an access or API token of a user whose role is `admin` (read from the store at each request); others get 403.',
      summary: 'Mint an API token for a user',
      security: Security.accessOrApi,
      headers: BearerHeaders,
      body: CreateApiTokenBodySchema,
      response: { 201: CreateApiTokenResponseSchema, ...errors(400, 401, 403, 404, 429, 503) }
    }
  }, async function createToken (request, reply) {
    const { userId, expiration, name, scopes, sendsPerMinute, sendQuota } = request.body
    if (!userId) throw badRequest('User ID is required')
    const expiresAt = parseExpiration(expiration)
    const tokenId = randomUUID()
    const created = await fastify.store.createApiToken({
      id: tokenId,
      userId,
      createdBy: request.caller!.user.id,
      name: name ?? null,
      expiresAt: expiresAt?.toISOString() ?? null,
      scopes: scopes ?? null,
      sendsPerMinute: sendsPerMinute ?? null,
      sendQuota: sendQuota ?? null
    })
    if (!created) throw notFound('User not found')
    const token = fastify.tokens.issueApi(tokenId, userId, expiresAt)
    reply.header('cache-control', 'no-store')
    return reply.code(201).send({
      success: true,
      token,
      name: created.user.name,
      tokenId,
      expiresAt: created.token.expiresAt,
      scopes: created.token.scopes,
      sendsPerMinute: created.token.sendsPerMinute,
      sendQuota: created.token.sendQuota
    })
  })

  fastify.get('/', {
    schema: {
      tags: ['admin'],
      description: 'Administrators only: an access or API token of a user whose role is `admin` (read from the store at each request); others get 403.',
      summary: "List API tokens (a user's, or all); never the token strings",
      security: Security.accessOrApi,
      querystring: ListApiTokensQuerySchema,
      response: { 200: ListApiTokensResponseSchema, ...errors(400, 401, 403, 429, 503) }
    }
  }, async function listTokens (request) {
    return { success: true as const, tokens: await fastify.store.listApiTokens(request.query.userId ?? null) }
  })

  fastify.delete('/:tokenId', {
    schema: {
      tags: ['admin'],
      description: 'Administrators only: an access or API token of a user whose role is `admin` (read from the store at each request); others get 403.',
      summary: 'Revoke an API token; it is refused from the next request on',
      security: Security.accessOrApi,
      params: TokenIdParamsSchema,
      response: { 200: RevokeApiTokenResponseSchema, ...errors(400, 401, 403, 404, 429, 503) }
    }
  }, async function revokeToken (request) {
    const token = await fastify.store.revokeApiToken(request.params.tokenId)
    if (!token) throw notFound('Token not found')
    return { success: true as const, token }
  })
}
export default routes
