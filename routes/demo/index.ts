import { readFile } from 'node:fs/promises'
import type { FastifyPluginAsync, FastifyReply } from 'fastify'
import { ApiError } from '../../lib/errors.js'
import { clientBuildFile } from '../../lib/paths.js'
import { PAGE_CSS, PAGE_HTML, PAGE_ICON, PAGE_SCRIPT } from './page.js'
import { addDocumentHeaders } from '../../plugins/external/helmet.js'

// Scripts and styles come from this folder's own URLs only: no inline code, no third parties.
const CSP = [
  "default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
  "img-src 'self'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"
].join('; ')

function asset (reply: FastifyReply, type: string, body: string) {
  return reply
    .header('content-type', `${type}; charset=utf-8`)
    .header('content-security-policy', CSP)
    .header('x-content-type-options', 'nosniff')
    .header('cache-control', 'no-cache')
    .send(body)
}

/**
 * A page to watch messages arrive (`DEMO`, on outside production): connect with an
 * access token or the access_token cookie, acknowledge, send with an API token.
 * It runs the typed client as built for browsers (dist/client).
 */
const routes: FastifyPluginAsync = async function (fastify) {
  const hidden = { schema: { hide: true } }
  fastify.addHook('onRequest', addDocumentHeaders)
  // /demo and /demo/ alike (ignoreTrailingSlash): the page links its files by absolute path.
  fastify.get('/demo/', hidden, async (_request, reply) => asset(reply, 'text/html', PAGE_HTML))
  fastify.get('/demo/demo.js', hidden, async (_request, reply) => asset(reply, 'text/javascript', PAGE_SCRIPT))
  fastify.get('/demo/demo.css', hidden, async (_request, reply) => asset(reply, 'text/css', PAGE_CSS))
  fastify.get('/demo/icon.svg', hidden, async (_request, reply) => asset(reply, 'image/svg+xml', PAGE_ICON))
  fastify.get('/demo/client.js', hidden, async (_request, reply) => {
    const client = await readFile(clientBuildFile, 'utf8').catch(() => null)
    if (client === null) throw new ApiError(503, 'CLIENT_NOT_BUILT', 'The browser client is not built: run `npm run build:client`')
    return asset(reply, 'text/javascript', client.replace(/\n\/\/# sourceMappingURL=.*\n?$/, '\n'))
  })
}

export default routes
