import type { FastifyServerOptions } from 'fastify'
import type { Config } from './config.js'
import { loggerOptions } from './logger.js'

/** pino-pretty is a development dependency: a production install logs plain JSON even on a terminal. */
function hasPrettyPrinter (): boolean {
  try {
    import.meta.resolve('pino-pretty')
    return true
  } catch {
    return false
  }
}

/** Fastify's own options, shared by server.ts and the tests so both run the same service. */
export function serverOptions (config: Config, overrides: Partial<FastifyServerOptions> = {}): FastifyServerOptions {
  return {
    logger: loggerOptions(config.LOG_LEVEL, process.stdout.isTTY && config.NODE_ENV !== 'production' && hasPrettyPrinter()),
    bodyLimit: config.BODY_LIMIT,
    trustProxy: config.TRUST_PROXY,
    // Requests carry an id clients can quote; take a proxy's id when it sends one.
    requestIdHeader: 'x-request-id',
    ajv: { customOptions: { coerceTypes: 'array', removeAdditional: false, allErrors: false } },
    routerOptions: { ignoreTrailingSlash: true },
    forceCloseConnections: true,
    // Creating the embedded store on a new DATA_DIR can take longer than the default 10 s on a busy machine.
    pluginTimeout: 60_000,
    ...overrides
  }
}
