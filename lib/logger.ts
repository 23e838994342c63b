import type { FastifyServerOptions, FastifyRequest } from 'fastify'

const TOKEN_PARAM = /([?&](?:token|access_token|ticket)=)[^&#]*/gi

/** The URL with token-bearing query parameters replaced. */
export function redactUrl (url: string): string {
  return url.replace(TOKEN_PARAM, '$1[REDACTED]')
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
