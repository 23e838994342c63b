// Alone and first: every static import of a module is loaded (read, parsed, compiled)
// before any of them runs, so the server's own modules are imported below, once
// V8's young generation is held at its minimum.
import { startupDone } from './lib/young-generation.js'
import type { Config } from './lib/config.js'

const [{ default: Fastify }, { default: closeWithGrace }, { default: app }, { ConfigError, loadConfig }, { DataDirLockedError }, { SchemaOutdatedError }, { serverOptions }] = await Promise.all([
  import('fastify'),
  import('close-with-grace'),
  import('./app.js'),
  import('./lib/config.js'),
  import('./lib/data-dir-lock.js'),
  import('./lib/errors.js'),
  import('./lib/server-options.js')
])

/** Problems an operator fixes: one clear line, no stack trace, exit 1. */
function exitOnOperatorError (error: unknown): void {
  if (error instanceof ConfigError || error instanceof DataDirLockedError || error instanceof SchemaOutdatedError) {
    process.stderr.write(error.message + '\n')
    process.exit(1)
  }
}

let config: Config
try {
  config = loadConfig()
} catch (error) {
  exitOnOperatorError(error)
  throw error
}

const server = Fastify(serverOptions(config))

// On SIGTERM/SIGINT: stop accepting, close sockets with 1001 (clients reconnect elsewhere), then exit.
closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS }, async ({ signal, err }) => {
  if (err) server.log.error({ err }, 'server closing after error')
  else server.log.info({ signal }, 'server closing')
  await server.close()
})

try {
  await server.register(app, { config })
  await server.listen({ port: config.PORT, host: config.HOST })
  startupDone()
} catch (error) {
  exitOnOperatorError(error)
  server.log.error({ err: error }, 'failed to start')
  process.exit(1)
}
