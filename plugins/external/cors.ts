import fp from 'fastify-plugin'
import fastifyCors from '@fastify/cors'

/** Only origins listed in CORS_ORIGINS may call with credentials (the same list guards cookie-authenticated sockets). */
export default fp(async function cors (fastify) {
  const origins = fastify.config.CORS_ORIGINS
  await fastify.register(fastifyCors, {
    origin: origins.length > 0 ? origins : false,
    credentials: true,
    methods: ['GET', 'POST', 'DELETE', 'OPTIONS'],
    allowedHeaders: ['Authorization', 'Content-Type', 'Idempotency-Key'],
    maxAge: 600
  })
}, { name: 'cors', dependencies: ['env'] })
