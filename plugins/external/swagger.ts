import fp from 'fastify-plugin'
import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import type { TSchema } from '@sinclair/typebox'
import { asyncApiDocument } from '../../lib/asyncapi.js'
import { ERROR_DESCRIPTIONS } from '../../schemas/common.js'
import { ClerkDeletedUserSchema, ClerkUserSchema } from '../../schemas/webhooks.js'
import { WsQuerySchema } from '../../schemas/ws.js'
import { addDocumentHeaders } from './helmet.js'

const VERSION = '0.1.0'
type Json = Record<string, unknown>
const plain = (schema: TSchema) => JSON.parse(JSON.stringify(schema)) as Json

/** JSON Schema as OpenAPI 3.0 spells it (no `type: null`, no patternProperties), for the schemas no route carries. */
function openapi30 (schema: Json): Json {
  const { anyOf, patternProperties, properties, items, ...rest } = schema as Json & { anyOf?: Json[], patternProperties?: Record<string, Json>, properties?: Record<string, Json>, items?: Json }
  if (anyOf) {
    const others = anyOf.filter(option => option.type !== 'null')
    const nullable = others.length < anyOf.length ? { nullable: true } : {}
    return others.length === 1 ? { ...rest, ...openapi30(others[0]), ...nullable } : { ...rest, anyOf: others.map(openapi30), ...nullable }
  }
  const converted: Json = { ...rest }
  if (properties) converted.properties = Object.fromEntries(Object.entries(properties).map(([key, value]) => [key, openapi30(value)]))
  if (items) converted.items = openapi30(items)
  if (patternProperties) converted.additionalProperties = openapi30(Object.values(patternProperties)[0])
  return converted
}
const errorRef = (status: number) => ({
  description: ERROR_DESCRIPTIONS[status],
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } }
})

/**
 * GET /ws: @fastify/websocket hides its routes from the document, so the upgrade is
 * described here; the protocol after it is the AsyncAPI document.
 */
const wsPath = {
  get: {
    tags: ['websocket'],
    summary: 'Open a WebSocket for real-time messages',
    description: 'Send `Connection: Upgrade` and `Upgrade: websocket`. Authentication happens before the upgrade, with one of: ' +
      'a single-use ticket in `?token=` (from GET /websocket-token/; the only token accepted in a URL), an access token in ' +
      '`Authorization: Bearer`, or the `access_token` cookie from an Origin listed in CORS_ORIGINS. Frames and close codes: ' +
      'the AsyncAPI document at /docs/asyncapi.json.',
    security: [{ wsTicket: [] }, { accessToken: [] }, { accessTokenCookie: [] }],
    parameters: [
      { name: 'token', in: 'query', required: false, schema: plain(WsQuerySchema.properties.token), description: 'A single-use ws ticket' }
    ],
    responses: {
      101: { description: 'Switching Protocols: the socket is open; the server sends a ready frame first' },
      401: errorRef(401),
      403: errorRef(403),
      426: errorRef(426),
      429: { ...errorRef(429), description: 'Too many sockets for this user (TOO_MANY_SOCKETS) or connection attempts from this IP (RATE_LIMITED)' },
      503: { ...errorRef(503), description: 'The server is draining, or Redis is down so a ticket cannot be checked: reconnect later' }
    }
  }
}

/** The webhook reads its body raw (the signature covers the exact bytes), so its shape is documented here. */
const clerkEvent = (type: string, data: string) => ({
  type: 'object',
  title: `Clerk ${type} event`,
  required: ['type', 'data'],
  properties: {
    type: { type: 'string', enum: [type] },
    object: { type: 'string', enum: ['event'] },
    timestamp: { type: 'number', description: 'When the event happened, ms since epoch' },
    instance_id: { type: 'string' },
    data: { $ref: `#/components/schemas/${data}` }
  }
})
const webhookBody = {
  required: true,
  description: 'A Clerk event as svix delivers it. Other event types are acknowledged and ignored.',
  content: {
    'application/json': {
      schema: {
        oneOf: [
          clerkEvent('user.created', 'ClerkUser'),
          clerkEvent('user.updated', 'ClerkUser'),
          clerkEvent('user.deleted', 'ClerkDeletedUser')
        ],
        discriminator: { propertyName: 'type' }
      }
    }
  }
}

/** OpenAPI 3 generated from the routes' TypeBox schemas, served at /docs and /docs/json unless DOCS=off; AsyncAPI beside it. */
export default fp(async function swagger (fastify) {
  await fastify.register(fastifySwagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'gatehouse', description: 'Tokens for dashboard, extension and browser clients; real-time messaging. The WebSocket protocol: /docs/asyncapi.json.', version: VERSION },
      components: {
        securitySchemes: {
          accessToken: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'An access token (24 h): POST /api/dashboard-token/generate, or `npm run cli -- tokens access`' },
          apiToken: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'An API token minted by an administrator (POST /api/admin/tokens or `npm run cli -- tokens mint`); revocable' },
          accessTokenCookie: { type: 'apiKey', in: 'cookie', name: 'access_token', description: "The browser's access token cookie; on /ws only from an Origin in CORS_ORIGINS" },
          clerkSession: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'A Clerk session token (needs CLERK_JWT_KEY or CLERK_SECRET_KEY)' },
          wsTicket: { type: 'apiKey', in: 'query', name: 'token', description: 'A single-use ticket from GET /websocket-token/ (GET /ws only)' },
          introspectionToken: { type: 'http', scheme: 'bearer', description: 'INTROSPECTION_TOKEN, for services that check API tokens (POST /api/tokens/introspect only)' }
        }
      }
    },
    // Components are named by their $id (User, Error, …), not def-0, so generated types read well.
    refResolver: {
      buildLocalReference (json, _baseUri, _fragment, i) {
        if (typeof json.$id !== 'string') return `def-${i}`
        if (!json.title) json.title = json.$id
        return json.$id
      }
    },
    transformObject (documentObject) {
      const document = (documentObject as { openapiObject: unknown }).openapiObject as { paths: Record<string, Record<string, Record<string, unknown>>>, components: { schemas: Record<string, unknown> } }
      document.components.schemas.ClerkUser = { ...openapi30(plain(ClerkUserSchema)), title: 'ClerkUser', description: "The fields of Clerk's UserJSON that gatehouse keeps" }
      document.components.schemas.ClerkDeletedUser = { ...openapi30(plain(ClerkDeletedUserSchema)), title: 'ClerkDeletedUser' }
      const webhook = document.paths['/api/webhooks/clerk']?.post
      if (webhook) webhook.requestBody = webhookBody
      document.paths['/ws'] = wsPath
      return document
    }
  })
  // The documents are still built when DOCS=off (fastify.swagger()): only serving them is optional.
  if (fastify.config.DOCS !== 'on') return
  await fastify.register(fastifySwaggerUi, { routePrefix: '/docs', staticCSP: true, uiHooks: { onRequest: addDocumentHeaders } })
  const asyncapi = asyncApiDocument(VERSION)
  fastify.get('/docs/asyncapi.json', { schema: { hide: true } }, async () => asyncapi)
}, { name: 'swagger', dependencies: ['env'] })
