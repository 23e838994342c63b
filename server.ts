// First: holds V8's young generation at its minimum while the modules below load.
import { startupDone } from './lib/young-generation.js'
import Fastify from 'fastify'
import closeWithGrace from 'close-with-grace'
import app from './app.js'
import { ConfigError, loadConfig, type Config } from './lib/config.js'
import { DataDirLockedError } from './lib/data-dir-lock.js'
import { SchemaOutdatedError } from './lib/errors.js'
import { serverOptions } from './lib/server-options.js'

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
