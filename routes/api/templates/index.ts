import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { ApiError, unauthorized } from '../../../lib/errors.js'
import { assertContentSize } from '../../../plugins/app/messaging.js'
import { templateScope, type TemplateScope } from '../../../plugins/app/supabase/store.js'
import { errors, Security } from '../../../schemas/common.js'
import {
  CreateTemplateBodySchema, TemplateDeletedResponseSchema, TemplateListResponseSchema, TemplateParamsSchema, TemplateResponseSchema
} from '../../../schemas/templates.js'

function scopeOf (request: FastifyRequest): TemplateScope {
  if (!request.caller) throw unauthorized()
  return templateScope(request.caller.user)
}

// Another organization's template is as absent as one that never existed.
const templateNotFound = () => new ApiError(404, 'TEMPLATE_NOT_FOUND', 'Template not found')

const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  const { store, config } = fastify
  fastify.addHook('onRequest', fastify.authenticate({ kinds: ['api', 'access'], message: 'Unauthorized: Missing or invalid token' }))

  fastify.post('/', {
    preValidation: fastify.requireScope('templates:write'),
    schema: {
      summary: 'Create a message template; {{placeholders}} are filled at send time',
      tags: ['templates'],
      security: Security.accessOrApi,
      body: CreateTemplateBodySchema,
      response: { 201: TemplateResponseSchema, ...errors(400, 401, 403, 409, 413, 415, 429, 500, 503) }
    }
  }, async function createTemplate (request, reply) {
    const { name, content } = request.body
    assertContentSize(content, config.MAX_CONTENT_BYTES)
    const template = await store.createTemplate(scopeOf(request), { name, content })
    // Names are unique within the organization: send-template accepts a name for an id.
    if (!template) throw new ApiError(409, 'TEMPLATE_NAME_TAKEN', `A template named "${name}" already exists`)
    return reply.code(201).send({ success: true, template })
  })

  fastify.get('/', {
    preValidation: fastify.requireScope('templates:read'),
    schema: {
      summary: "The organization's templates, oldest first",
      tags: ['templates'],
      security: Security.accessOrApi,
      response: { 200: TemplateListResponseSchema, ...errors(401, 403, 429, 500, 503) }
    }
  }, async function listTemplates (request) {
    return { success: true as const, templates: await store.listTemplates(scopeOf(request)) }
  })

  fastify.get('/:id', {
    preValidation: fastify.requireScope('templates:read'),
    schema: {
      summary: 'One template',
      tags: ['templates'],
      security: Security.accessOrApi,
      params: TemplateParamsSchema,
      response: { 200: TemplateResponseSchema, ...errors(400, 401, 403, 404, 429, 500, 503) }
    }
  }, async function getTemplate (request) {
    const template = await store.getTemplate(scopeOf(request), request.params.id)
    if (!template) throw templateNotFound()
    return { success: true as const, template }
  })

  fastify.delete('/:id', {
    preValidation: fastify.requireScope('templates:write'),
    schema: {
      summary: 'Delete a template',
      tags: ['templates'],
      security: Security.accessOrApi,
      params: TemplateParamsSchema,
      response: { 200: TemplateDeletedResponseSchema, ...errors(400, 401, 403, 404, 429, 500, 503) }
    }
  }, async function deleteTemplate (request) {
    const { id } = request.params
    if (!(await store.deleteTemplate(scopeOf(request), id))) throw templateNotFound()
    return { success: true as const, id }
  })
}

export default routes
