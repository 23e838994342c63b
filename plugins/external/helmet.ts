import fp from 'fastify-plugin'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { onRequestHookHandler } from 'fastify'
import helmet from 'helmet'

/**
 * The headers helmet's middleware sets, read once: with static options (no nonces)
 * they are the same on every response.
 */
function headersOf (middleware: ReturnType<typeof helmet>): Record<string, string> {
  const headers: Record<string, string> = {}
  const recorder = {
    setHeader (name: string, value: string) { headers[name.toLowerCase()] = value },
    // Only X-Powered-By, which Fastify never sets.
    removeHeader (name: string) { delete headers[name.toLowerCase()] }
  }
  middleware({} as IncomingMessage, recorder as unknown as ServerResponse, () => {})
  return headers
}

/**
 * Headers that only mean something to a browser rendering a document (opener
 * isolation, agent clusters, DNS prefetching, IE's download prompt, Adobe's
 * cross-domain policies, the retired XSS auditor): sent with the HTML pages (docs,
 * demo), not with every JSON answer, where each costs the server and every client
 * the bytes and the parsing for nothing (OWASP's REST cheat sheet lists the rest).
 */
const DOCUMENT_ONLY = ['cross-origin-opener-policy', 'origin-agent-cluster', 'x-dns-prefetch-control',
  'x-download-options', 'x-permitted-cross-domain-policies', 'x-xss-protection']

const defaults = headersOf(helmet({ contentSecurityPolicy: false, hsts: false }))
const documentHeaders = Object.fromEntries(DOCUMENT_ONLY.map(name => [name, defaults[name]]))

/** An onRequest hook for the routes that serve HTML: helmet's document headers besides the common ones. */
export const addDocumentHeaders: onRequestHookHandler = function addDocumentHeaders (_request, reply, done) {
  reply.headers(documentHeaders)
  done()
}

/**
 * Security headers on every response. The service answers JSON: nothing may load
 * from it into a page or frame it (the docs UI and the demo page set their own
 * policy). HSTS only when HSTS_MAX_AGE says so: it binds browsers to HTTPS, which a
 * proxy in front decides.
 *
 * helmet decides the headers, once: @fastify/helmet builds its middleware again on
 * every request (parsing every directive), and even run per request the middleware's
 * chain of a dozen setHeader calls on the raw response cost more than setting the
 * same headers on the reply, which writes them with its own in one writeHead.
 */
export default fp(async function securityHeaders (fastify) {
  const maxAge = fastify.config.HSTS_MAX_AGE
  const headers = headersOf(helmet({
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    hsts: maxAge > 0 ? { maxAge, includeSubDomains: true } : false
  }))
  for (const name of DOCUMENT_ONLY) delete headers[name]
  fastify.addHook('onRequest', function helmetHeaders (_request, reply, done) {
    reply.headers(headers)
    done()
  })
}, { name: 'helmet', dependencies: ['env'] })
