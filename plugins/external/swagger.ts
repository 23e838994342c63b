import fp from 'fastify-plugin'
import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'

/** OpenAPI 3 generated from the routes' TypeBox schemas, served at /docs and /docs/json unless DOCS=off. */
export default fp(async function swagger (fastify) {
  await fastify.register(fastifySwagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'gatehouse', description: 'Tokens for dashboard, extension and browser clients; real-time messaging.', version: '0.1.0' },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
          cookie: { type: 'apiKey', in: 'cookie', name: 'access_token' }
        }
      }
    }
  })
  // The document is still built when DOCS=off (fastify.swagger()): only serving it is optional.
  if (fastify.config.DOCS === 'on') await fastify.register(fastifySwaggerUi, { routePrefix: '/docs', staticCSP: true })
}, { name: 'swagger', dependencies: ['env'] })
