import Fastify from 'fastify'
import closeWithGrace from 'close-with-grace'
import app from './app.js'
import { ConfigError, loadConfig } from './lib/config.js'
import { serverOptions } from './lib/server-options.js'

let config
try {
  config = loadConfig()
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(error.message + '\n')
    process.exit(1)
  }
  throw error
}

const server = Fastify(serverOptions(config))
await server.register(app, { config })

// On SIGTERM/SIGINT: stop accepting, close sockets with 1001 (clients reconnect elsewhere), then exit.
closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS }, async ({ signal, err }) => {
  if (err) server.log.error({ err }, 'server closing after error')
  else server.log.info({ signal }, 'server closing')
  await server.close()
})

try {
  await server.listen({ port: config.PORT, host: config.HOST })
} catch (err) {
  server.log.error({ err }, 'failed to start')
  process.exit(1)
}
