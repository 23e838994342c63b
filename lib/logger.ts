import { LogController, type FastifyBaseLogger, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import type { Logger } from 'pino'

const TOKEN_PARAMS = new Set(['token', 'access_token', 'ticket'])

/** A query key as the querystring parser reads it (`tok%65n` is `token`), or null when it does not decode. */
function decodeKey (raw: string): string | null {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' ')).trim().toLowerCase()
  } catch {
    return null
  }
}

/**
 * The URL with the values of token-bearing query parameters replaced. Keys are
 * compared decoded, as the route reads them; a key that does not decode loses its
 * value too, so no spelling of `token` reaches the logs.
 */
export function redactUrl (url: string): string {
  const start = url.indexOf('?')
  if (start === -1) return url
  const query = url.slice(start + 1).split('&').map(part => {
    const eq = part.indexOf('=')
    if (eq === -1) return part
    const key = decodeKey(part.slice(0, eq))
    return key === null || TOKEN_PARAMS.has(key) ? `${part.slice(0, eq)}=[REDACTED]` : part
  })
  return `${url.slice(0, start)}?${query.join('&')}`
}

/** pino options: JSON, no credential ever written (headers, cookies, query tokens, token fields). */
export function loggerOptions (level: string, pretty = false): FastifyServerOptions['logger'] {
  return {
    level,
    redact: {
      paths: [
        'req.headers.authorization', 'req.headers.cookie', 'res.headers["set-cookie"]',
        'headers.authorization', 'headers.cookie',
        'token', '*.token', 'access_token', '*.access_token', 'secret', '*.secret'
      ],
      censor: '[REDACTED]'
    },
    serializers: {
      req (request: FastifyRequest) {
        return {
          method: request.method,
          url: redactUrl(request.url),
          host: request.host,
          remoteAddress: request.ip,
          requestId: request.id
        }
      }
    },
    ...(pretty ? { transport: { target: 'pino-pretty' } } : {})
  }
}

/**
 * One log line per request, when it completes, carrying what Fastify's "incoming
 * request" line held (method, redacted URL, host, address, id) beside the status and
 * response time: Fastify writes two lines a request.
 *
 * The line is written without pino's redaction, which cost twice the rest of the line
 * (its redactor re-reads every path on every call): every field in it comes from the
 * serializers above, which never carry a header or a query token, so there is nothing
 * in it to redact. Every other line, errors included, is redacted as before.
 */
export class RequestLog extends LogController {
  private readonly plain = new WeakMap<FastifyBaseLogger, FastifyBaseLogger>()

  override incomingRequest (): void {}

  override requestCompleted (error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (this.isLogDisabled(request)) return
    if (error) {
      reply.log.error({ req: request, res: reply, err: error, responseTime: reply.elapsedTime }, 'request errored')
      return
    }
    // The request's own logger decides the level (routes may log only warnings).
    if (!(reply.log as Logger).isLevelEnabled('info')) return
    const root = request.server.log
    let plain = this.plain.get(root)
    if (!plain) {
      plain = root.child({}, { redact: { paths: [] } })
      this.plain.set(root, plain)
    }
    plain.info({ [this.requestIdLogLabel]: request.id, req: request, res: reply, responseTime: reply.elapsedTime }, 'request completed')
  }
}
