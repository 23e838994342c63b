import fp from 'fastify-plugin'
import fastifyHelmet from '@fastify/helmet'

/**
 * Security headers on every response. The service answers JSON: nothing may load
 * from it into a page or frame it (the docs UI sets its own policy). HSTS only when
 * HSTS_MAX_AGE says so: it binds browsers to HTTPS, which a proxy in front decides.
 */
export default fp(async function helmet (fastify) {
  const maxAge = fastify.config.HSTS_MAX_AGE
  await fastify.register(fastifyHelmet, {
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    hsts: maxAge > 0 ? { maxAge, includeSubDomains: true } : false
  })
}, { name: 'helmet', dependencies: ['env'] })
