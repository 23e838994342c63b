import fp from 'fastify-plugin'
import type { FastifyError, FastifyInstance } from 'fastify'
import { ApiError, toErrorBody } from './lib/errors.js'
import type { Config } from './lib/config.js'
import type { RpcDriver } from './plugins/app/supabase/driver.js'
import { ErrorSchema } from './schemas/common.js'

import env from './plugins/external/env.js'
import cors from './plugins/external/cors.js'
import helmet from './plugins/external/helmet.js'
import rateLimit from './plugins/external/rate-limit.js'
import swagger from './plugins/external/swagger.js'
import jwt from './plugins/external/jwt.js'
import websocket from './plugins/external/websocket.js'
import redis from './plugins/app/redis.js'
import supabase from './plugins/app/supabase/index.js'
import tokens from './plugins/app/tokens.js'
import keys from './plugins/app/keys.js'
import auth from './plugins/app/auth.js'
import tokenLimits from './plugins/app/token-limits.js'
import scopes from './plugins/app/scopes.js'
import clerk from './plugins/app/clerk.js'
import metrics from './plugins/app/metrics.js'
import hub from './plugins/app/websocket/index.js'
import messaging from './plugins/app/messaging.js'
import retention from './plugins/app/retention.js'

import healthRoutes from './routes/health/index.js'
import dashboardTokenRoutes from './routes/api/dashboard-token/index.js'
import websocketTokenRoutes from './routes/websocket-token/index.js'
import adminTokenRoutes from './routes/api/admin/tokens/index.js'
import adminUserRoutes from './routes/api/admin/users/index.js'
import messageRoutes from './routes/api/messages/index.js'
import templateRoutes from './routes/api/templates/index.js'
import webhookRoutes from './routes/api/webhooks/index.js'
import wellKnownRoutes from './routes/well-known/index.js'
import tokenRoutes from './routes/api/tokens/index.js'
import wsRoutes from './routes/ws/index.js'
import demoRoutes from './routes/demo/index.js'

export interface AppOptions {
  config: Config
  /** A storage driver built by the caller (tests); otherwise config.store decides. */
  driver?: RpcDriver
}

async function app (fastify: FastifyInstance, opts: AppOptions) {
  fastify.addSchema(ErrorSchema)

  // Before anything registers a route: handlers and hooks apply only to routes added after them.
  fastify.setErrorHandler(function errorHandler (error: FastifyError, request, reply) {
    const body = toErrorBody(error)
    if (body.statusCode >= 500) request.log.error({ err: error, route: request.routeOptions.url }, 'request failed')
    else request.log.info({ statusCode: body.statusCode, code: body.code }, body.message)
    if (body.statusCode === 503) reply.header('retry-after', '5')
    return reply.code(body.statusCode).send(body)
  })

  // First of the hooks: its onRequest marks upgrade requests and its onResponse closes their socket
  // when a later hook (rate limit, draining) answers with an error instead of upgrading.
  await fastify.register(websocket)
  await fastify.register(env, { config: opts.config })

  // Requests that arrive while the server closes get a 503 in the envelope, and their connection closes.
  let closing = false
  fastify.addHook('preClose', async () => { closing = true })
  // Callback style, as every hook on the path of every request: no promise to settle.
  fastify.addHook('onRequest', function refuseWhileClosing (_request, reply, done) {
    if (!closing) return done()
    reply.header('connection', 'close')
    done(new ApiError(503, 'SERVER_CLOSING', 'Server is shutting down, retry shortly'))
  })

  await fastify.register(helmet)
  await fastify.register(cors)
  await fastify.register(redis)
  await fastify.register(rateLimit)
  await fastify.register(swagger)
  await fastify.register(jwt)
  await fastify.register(metrics)
  await fastify.register(supabase, { driver: opts.driver })
  await fastify.register(tokens)
  await fastify.register(keys)
  await fastify.register(auth)
  await fastify.register(scopes)
  await fastify.register(tokenLimits)
  await fastify.register(clerk)
  await fastify.register(hub)
  await fastify.register(messaging)
  await fastify.register(retention)

  // Unknown routes share the error envelope; the global rate limit covers them, so probing is slow.
  fastify.setNotFoundHandler(function notFound (request, reply) {
    const message = `Route ${request.method}:${request.url.split('?')[0]} not found`
    return reply.code(404).send({ success: false, statusCode: 404, status: 404, code: 'NOT_FOUND', error: message, message })
  })

  await fastify.register(healthRoutes)
  await fastify.register(dashboardTokenRoutes, { prefix: '/api/dashboard-token' })
  await fastify.register(websocketTokenRoutes, { prefix: '/websocket-token' })
  await fastify.register(adminTokenRoutes, { prefix: '/api/admin/tokens' })
  await fastify.register(adminUserRoutes, { prefix: '/api/admin/users' })
  await fastify.register(tokenRoutes, { prefix: '/api/tokens' })
  await fastify.register(messageRoutes, { prefix: '/api/messages' })
  await fastify.register(templateRoutes, { prefix: '/api/templates' })
  await fastify.register(webhookRoutes, { prefix: '/api/webhooks' })
  await fastify.register(wsRoutes, { prefix: '/ws' })
  await fastify.register(wellKnownRoutes, { prefix: '/.well-known' })
  if (opts.config.DEMO) await fastify.register(demoRoutes)
}

// Not encapsulated: the server (and tests) see the decorators and the error handler set here.
export default fp(app, { name: 'gatehouse' })
