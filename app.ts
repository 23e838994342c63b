import fp from 'fastify-plugin'
import type { FastifyError, FastifyInstance } from 'fastify'
import { ApiError } from './lib/errors.js'
import type { Config } from './lib/config.js'
import type { RpcDriver } from './plugins/app/supabase/driver.js'
import type { ErrorBody } from './schemas/common.js'
import { ErrorSchema } from './schemas/common.js'

import env from './plugins/external/env.js'
import cookie from './plugins/external/cookie.js'
import cors from './plugins/external/cors.js'
import rateLimit from './plugins/external/rate-limit.js'
import swagger from './plugins/external/swagger.js'
import jwt from './plugins/external/jwt.js'
import websocket from './plugins/external/websocket.js'
import supabase from './plugins/app/supabase/index.js'
import tokens from './plugins/app/tokens.js'
import auth from './plugins/app/auth.js'
import clerk from './plugins/app/clerk.js'
import metrics from './plugins/app/metrics.js'
import hub from './plugins/app/hub.js'
import messaging from './plugins/app/messaging.js'

import healthRoutes from './routes/health/index.js'
import dashboardTokenRoutes from './routes/api/dashboard-token/index.js'
import websocketTokenRoutes from './routes/websocket-token/index.js'
import adminTokenRoutes from './routes/api/admin/tokens/index.js'
import messageRoutes from './routes/api/messages/index.js'
import templateRoutes from './routes/api/templates/index.js'
import webhookRoutes from './routes/api/webhooks/index.js'
import wsRoutes from './routes/ws/index.js'
import demoRoutes from './routes/demo/index.js'

export interface AppOptions {
  config: Config
  /** A storage driver built by the caller (tests); otherwise config.store decides. */
  driver?: RpcDriver
}

/** Maps any error to the one envelope; status and code come from the error when it is a client error. */
export function toErrorBody (error: FastifyError | ApiError | Error): ErrorBody {
  const err = error as FastifyError & Partial<ApiError>
  let statusCode = typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500
  let code = err instanceof ApiError ? err.code : 'INTERNAL_ERROR'
  let message = err.message
  const details = err instanceof ApiError ? err.details : undefined

  if (err.validation) {
    statusCode = 400
    code = 'VALIDATION_ERROR'
    message = err.message
  } else if (!(err instanceof ApiError) && statusCode < 500) {
    code = {
      FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
      FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
      FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
      FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON'
    }[err.code ?? ''] ?? (err.code?.startsWith('FST_') ? 'BAD_REQUEST' : err.code ?? 'BAD_REQUEST')
    if (err.name === 'SyntaxError') code = 'INVALID_JSON'
  }
  if (statusCode >= 500 && !(err instanceof ApiError)) message = 'Internal server error'
  return { success: false, statusCode, status: statusCode, code, error: message, message, ...(details ? { details } : {}) }
}

async function app (fastify: FastifyInstance, opts: AppOptions) {
  fastify.addSchema(ErrorSchema)

  await fastify.register(env, { config: opts.config })
  await fastify.register(cookie)
  await fastify.register(cors)
  await fastify.register(rateLimit)
  await fastify.register(swagger)
  await fastify.register(jwt)
  await fastify.register(websocket)
  await fastify.register(metrics)
  await fastify.register(supabase, { driver: opts.driver })
  await fastify.register(tokens)
  await fastify.register(auth)
  await fastify.register(clerk)
  await fastify.register(hub)
  await fastify.register(messaging)

  fastify.setErrorHandler(function errorHandler (error: FastifyError, request, reply) {
    const body = toErrorBody(error)
    if (body.statusCode >= 500) request.log.error({ err: error, route: request.routeOptions.url }, 'request failed')
    else request.log.info({ statusCode: body.statusCode, code: body.code }, body.message)
    if (body.statusCode === 503) reply.header('retry-after', '5')
    return reply.code(body.statusCode).send(body)
  })

  // Unknown routes share the error envelope; the global rate limit covers them, so probing is slow.
  fastify.setNotFoundHandler(function notFound (request, reply) {
    const message = `Route ${request.method}:${request.url.split('?')[0]} not found`
    return reply.code(404).send({ success: false, statusCode: 404, status: 404, code: 'NOT_FOUND', error: message, message })
  })

  await fastify.register(healthRoutes)
  await fastify.register(dashboardTokenRoutes, { prefix: '/api/dashboard-token' })
  await fastify.register(websocketTokenRoutes, { prefix: '/websocket-token' })
  await fastify.register(adminTokenRoutes, { prefix: '/api/admin/tokens' })
  await fastify.register(messageRoutes, { prefix: '/api/messages' })
  await fastify.register(templateRoutes, { prefix: '/api/templates' })
  await fastify.register(webhookRoutes, { prefix: '/api/webhooks' })
  await fastify.register(wsRoutes, { prefix: '/ws' })
  if (opts.config.DEMO) await fastify.register(demoRoutes)
}

// Not encapsulated: the server (and tests) see the decorators and the error handler set here.
export default fp(app, { name: 'gatehouse' })
