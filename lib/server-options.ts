import { STATUS_CODES, type Server } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyError, FastifyHttpOptions, FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify'
import { AjvCompiler } from '@fastify/ajv-compiler'
import type { Config } from './config.js'
import { toErrorBody } from './errors.js'
import { loggerOptions, RequestLog } from './logger.js'

/** pino-pretty is a development dependency: a production install logs plain JSON even on a terminal. */
function hasPrettyPrinter (): boolean {
  try {
    import.meta.resolve('pino-pretty')
    return true
  } catch {
    return false
  }
}

interface RouteSchema { schema: unknown, method: string, url: string, httpPart?: string }
type Validator = (route: RouteSchema) => unknown
type BuildValidator = (externalSchemas: unknown, ajvOptions?: { customOptions?: Record<string, unknown> }) => Validator

/**
 * Bodies are JSON and carry their own types, so they are validated strictly: `12345`
 * is not a string. Querystrings, params and headers are strings by nature and keep
 * coercion ("50" is a number).
 */
function validatorFactory (): BuildValidator {
  const build = AjvCompiler() as unknown as BuildValidator
  return function buildValidator (externalSchemas, ajvOptions = {}) {
    const options = (coerceTypes: false | 'array') => ({ ...ajvOptions, customOptions: { ...ajvOptions.customOptions, coerceTypes } })
    const strict = build(externalSchemas, options(false))
    const coercing = build(externalSchemas, options('array'))
    return (route) => route.httpPart === 'body' ? strict(route) : coercing(route)
  }
}

/** Router errors (bad URL encoding, over-long path parameter) in the one envelope. */
function frameworkErrors (error: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  const body = toErrorBody(error)
  request.log.info({ statusCode: body.statusCode, code: body.code }, body.message)
  // An upgrade request has left Node's HTTP parser and no hook runs here to close it:
  // the socket goes with the answer, or it would stay open for ever.
  if (request.headers.upgrade) {
    reply.header('connection', 'close')
    reply.raw.once('finish', () => request.raw.socket?.destroySoon())
  }
  return reply.code(body.statusCode).send(body)
}

/**
 * Errors Node raises before a request exists (timeouts, oversized headers, malformed
 * HTTP): answered in the envelope, then the connection is closed.
 */
function clientErrorHandler (this: FastifyInstance, error: NodeJS.ErrnoException, socket: Socket) {
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  const [statusCode, code, message] = error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
    ? [408, 'REQUEST_TIMEOUT', 'The request was not received in time']
    : error.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'HEADERS_TOO_LARGE', 'Request headers are too large']
      : [400, 'BAD_REQUEST', 'Malformed HTTP request']
  this.log.debug({ code: error.code }, 'client error')
  if (socket.writable) {
    const body = JSON.stringify({ success: false, statusCode, status: statusCode, code, error: message, message })
    socket.write(`HTTP/1.1 ${statusCode} ${STATUS_CODES[statusCode]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
  }
  socket.destroySoon()
}

/** Fastify's own options, shared by server.ts and the tests so both run the same service. */
export function serverOptions (config: Config, overrides: Partial<FastifyServerOptions> = {}): FastifyHttpOptions<Server> {
  return {
    logger: loggerOptions(config.LOG_LEVEL, process.stdout.isTTY && config.NODE_ENV !== 'production' && hasPrettyPrinter()),
    logController: new RequestLog(),
    bodyLimit: config.BODY_LIMIT,
    // A hop count is valid at run time (proxy-addr) though Fastify's types omit it.
    trustProxy: config.TRUST_PROXY as FastifyServerOptions['trustProxy'],
    // Requests carry an id clients can quote; take a proxy's id when it sends one.
    requestIdHeader: 'x-request-id',
    ajv: { customOptions: { removeAdditional: false, allErrors: false } },
    schemaController: { compilersFactory: { buildValidator: validatorFactory() as never } },
    routerOptions: { ignoreTrailingSlash: true },
    frameworkErrors,
    clientErrorHandler,
    // The app answers requests that arrive while it closes, in the envelope (app.ts).
    return503OnClosing: false,
    // Slow or stalled clients must not hold a connection: the whole request within
    // REQUEST_TIMEOUT_MS (408), no byte for CONNECTION_TIMEOUT_MS, idle keep-alive for KEEP_ALIVE_TIMEOUT_MS.
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    connectionTimeout: config.CONNECTION_TIMEOUT_MS,
    keepAliveTimeout: config.KEEP_ALIVE_TIMEOUT_MS,
    http: {
      // Node checks the timeouts on this interval (30 s by default), which would let a stalled body live that much longer.
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(config.REQUEST_TIMEOUT_MS / 4))),
      // Node swaps the two when headersTimeout (60 s by default) is the larger, so a shorter requestTimeout would not apply.
      headersTimeout: Math.min(60_000, config.REQUEST_TIMEOUT_MS)
    },
    forceCloseConnections: true,
    // Creating the embedded store on a new DATA_DIR can take longer than the default 10 s on a busy machine.
    pluginTimeout: 60_000,
    ...overrides
  }
}
