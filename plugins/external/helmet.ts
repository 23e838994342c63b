import fp from 'fastify-plugin'
import helmet from 'helmet'

/**
 * Security headers on every response. The service answers JSON: nothing may load
 * from it into a page or frame it (the docs UI sets its own policy). HSTS only when
 * HSTS_MAX_AGE says so: it binds browsers to HTTPS, which a proxy in front decides.
 *
 * helmet itself, with its middleware built once: @fastify/helmet builds it again
 * on every request (parsing every directive), which cost more than the rest of a
 * /health request.
 */
export default fp(async function securityHeaders (fastify) {
  const maxAge = fastify.config.HSTS_MAX_AGE
  const apply = helmet({
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    hsts: maxAge > 0 ? { maxAge, includeSubDomains: true } : false
  })
  fastify.addHook('onRequest', function helmetHeaders (request, reply, done) {
    apply(request.raw, reply.raw, () => done())
  })
}, { name: 'helmet', dependencies: ['env'] })
