import type { TSchema } from '@sinclair/typebox'
import {
  AckFrameSchema, MessageFrameSchema, PingFrameSchema, PongFrameSchema, ReadyFrameSchema, WS_CLOSE_DESCRIPTIONS, WsClose
} from '../schemas/ws.js'

/** A TypeBox schema as plain JSON Schema (TypeBox keeps its own keys as symbols, which JSON drops). */
const plain = (schema: TSchema) => JSON.parse(JSON.stringify(schema)) as Record<string, unknown>

/** Frames by name: what the server sends, and what it receives. */
const sent = { ready: ReadyFrameSchema, message: MessageFrameSchema, pong: PongFrameSchema }
const received = { ack: AckFrameSchema, ping: PingFrameSchema }

const closeCodes = Object.values(WsClose).map(code => `| \`${code}\` | ${WS_CLOSE_DESCRIPTIONS[code]} |`).join('\n')

/**
 * The WebSocket protocol of GET /ws as an AsyncAPI 3 document, built from the same
 * TypeBox schemas as the server (schemas/ws.ts), so the two cannot disagree.
 * Operations are the server's: it `send`s ready, message and pong frames and `receive`s ack and ping.
 */
export function asyncApiDocument (version: string) {
  const messages = Object.fromEntries(Object.entries({ ...sent, ...received }).map(([name, schema]) => [name, {
    name,
    title: schema.title,
    summary: schema.description,
    contentType: 'application/json',
    payload: { $ref: `#/components/schemas/${schema.title}` }
  }]))
  const operation = (action: 'send' | 'receive', name: string) => ({
    action,
    channel: { $ref: '#/channels/socket' },
    summary: messages[name].summary,
    messages: [{ $ref: `#/channels/socket/messages/${name}` }]
  })
  return {
    asyncapi: '3.1.0',
    info: {
      title: 'gatehouse WebSocket',
      version,
      description: 'Real-time delivery of messages. Frames are JSON text, at most 64 KiB, both ways.\n\n' +
        'Authentication happens before the upgrade (see GET /ws in the OpenAPI document at /docs/json): ' +
        'a single-use ticket in `?token=`, an access token in `Authorization: Bearer`, or the `access_token` cookie ' +
        'from an origin in CORS_ORIGINS. The server sends `ready` first, then every unacknowledged message oldest ' +
        'first, then live ones, with no gap. Delivery is at least once: de-duplicate by `id` and acknowledge. ' +
        'A message\'s `id` is its send\'s: unique among one user\'s messages, shared by every recipient of the send.\n\n' +
        'Close codes (reconnect with a new ticket and jittered backoff on any but 4003):\n\n' +
        '| code | meaning |\n|---|---|\n' + closeCodes
    },
    servers: {
      local: {
        host: 'localhost:3000',
        protocol: 'ws',
        description: 'The service itself; wss behind TLS',
        security: [{ $ref: '#/components/securitySchemes/ticket' }, { $ref: '#/components/securitySchemes/accessToken' }, { $ref: '#/components/securitySchemes/accessTokenCookie' }]
      }
    },
    channels: {
      socket: {
        address: '/ws',
        title: 'One user\'s socket',
        description: 'Everything a user is sent, on each of their sockets.',
        messages: Object.fromEntries(Object.keys(messages).map(name => [name, { $ref: `#/components/messages/${name}` }])),
        bindings: {
          ws: {
            method: 'GET',
            query: {
              type: 'object',
              properties: { token: { type: 'string', description: 'A single-use ticket from GET /websocket-token/' } }
            }
          }
        }
      }
    },
    operations: {
      sendReady: operation('send', 'ready'),
      sendMessage: operation('send', 'message'),
      sendPong: operation('send', 'pong'),
      receiveAck: operation('receive', 'ack'),
      receivePing: operation('receive', 'ping')
    },
    components: {
      schemas: Object.fromEntries(Object.values({ ...sent, ...received }).map(schema => [schema.title, plain(schema)])),
      messages,
      securitySchemes: {
        ticket: { type: 'httpApiKey', in: 'query', name: 'token', description: 'A single-use ticket from GET /websocket-token/ (valid WS_TOKEN_TTL seconds)' },
        accessToken: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'An access token (non-browser clients)' },
        accessTokenCookie: { type: 'httpApiKey', in: 'cookie', name: 'access_token', description: 'The browser\'s access token cookie, from an origin in CORS_ORIGINS' }
      }
    },
    'x-close-codes': Object.fromEntries(Object.values(WsClose).map(code => [code, WS_CLOSE_DESCRIPTIONS[code]]))
  }
}
