import fp from 'fastify-plugin'
import fastifyCookie from '@fastify/cookie'

/** Browsers send their access token in the `access_token` cookie. */
export default fp(async function cookie (fastify) {
  await fastify.register(fastifyCookie)
}, { name: 'cookie' })
