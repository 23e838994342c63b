import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { Config } from '../../lib/config.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

/** Exposes the configuration validated at start (lib/config.ts) to every plugin. */
export default fp(async function env (fastify: FastifyInstance, opts: { config: Config }) {
  fastify.decorate('config', opts.config)
}, { name: 'env' })
