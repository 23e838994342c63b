import { AjvCompiler } from '@fastify/ajv-compiler'
import { Parser } from '@asyncapi/parser'
import t from 'tap'
import WebSocket from 'ws'
import { accessTokenFor, apiTokenFor, buildApp, createUser } from '../helpers/app.js'
import { WsClose } from '../../schemas/ws.js'
import { listen, ticketFor, wsUrl } from './helpers.js'

interface AsyncApi {
  asyncapi: string
  channels: Record<string, { address: string, messages: Record<string, { $ref: string }> }>
  operations: Record<string, { action: 'send' | 'receive', messages: Array<{ $ref: string }> }>
  components: { schemas: Record<string, object>, messages: Record<string, { payload: { $ref: string } }> }
  'x-close-codes': Record<string, string>
}

/** The parser marks each schema it read with `x-parser-*` keys; Ajv's strict mode refuses unknown keywords. */
function withoutParserKeys (schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(withoutParserKeys)
  if (schema === null || typeof schema !== 'object') return schema
  return Object.fromEntries(Object.entries(schema).filter(([key]) => !key.startsWith('x-parser-')).map(([key, value]) => [key, withoutParserKeys(value)]))
}

/** Payload schema names of the operations with this action (the server's point of view). */
function payloads (doc: AsyncApi, action: 'send' | 'receive'): string[] {
  return Object.values(doc.operations).filter(op => op.action === action).flatMap(op => op.messages.map(message => {
    const name = message.$ref.split('/').at(-1) as string
    return (doc.components.messages[name].payload.$ref.split('/').at(-1)) as string
  }))
}

/** Names of the sender's frames, and their payload schemas as the official parser reads them ($refs resolved). */
function parsedPayloads (document: NonNullable<Awaited<ReturnType<Parser['parse']>>['document']>, action: 'send' | 'receive') {
  const operations = action === 'send' ? document.operations().filterBySend() : document.operations().filterByReceive()
  return Object.fromEntries(operations.flatMap(operation => operation.messages().all())
    .map(message => [message.title() as string, message.payload()?.json()]))
}

t.test('the AsyncAPI document describes the socket, and every frame the server sends matches it', async t => {
  const app = await buildApp(t)
  const res = await app.inject({ method: 'GET', url: '/docs/asyncapi.json' })
  t.equal(res.statusCode, 200)
  const doc = res.json() as AsyncApi
  t.equal(doc.asyncapi, '3.1.0')

  // The official parser (with its default Spectral ruleset) finds nothing to say: no error, warning, or hint.
  const { document, diagnostics } = await new Parser().parse(res.body)
  t.same(diagnostics.map(d => `${d.severity} ${d.code}: ${d.message} at ${d.path.join('.')}`), [], 'no diagnostics')
  if (!document) throw new Error('the parser refused the document')
  t.same(Object.keys(parsedPayloads(document, 'send')).sort(), ['MessageFrame', 'PongFrame', 'ReadyFrame'], 'the parser sees the frames the server sends')
  t.same(Object.keys(parsedPayloads(document, 'receive')).sort(), ['AckFrame', 'PingFrame'])
  t.equal(doc.channels.socket.address, '/ws')
  t.same(Object.keys(doc['x-close-codes']).map(Number).sort(), Object.values(WsClose).sort(), 'every close code is described')

  // The Ajv the server validates with (formats included), without type coercion: a frame is checked as sent.
  const compile = AjvCompiler()({}, { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false } })
  const sentSchemas = payloads(doc, 'send')
  t.same(sentSchemas.sort(), ['MessageFrame', 'PongFrame', 'ReadyFrame'])
  t.same(payloads(doc, 'receive').sort(), ['AckFrame', 'PingFrame'])
  // Server frames are checked against their payloads as the parser resolved them; client frames against the components.
  const parsedSent = parsedPayloads(document, 'send')
  const validators = Object.fromEntries(Object.entries({ ...doc.components.schemas, ...parsedSent })
    .map(([name, schema]) => [name, compile({ schema: withoutParserKeys(schema) } as never) as (value: unknown) => boolean]))
  /** The names of the sent-frame schemas a frame validates against: exactly one for a documented frame. */
  const matching = (frame: unknown) => sentSchemas.filter(name => validators[name](frame))

  const sender = await createUser(app, { organization_id: 'org_docs' })
  const bob = await createUser(app, { organization_id: 'org_docs' })
  const api = { authorization: `Bearer ${(await apiTokenFor(app, sender)).token}` }
  const base = await listen(app)

  // Stored before the socket opens (replayed), with a template (templateId present), and live.
  t.equal((await app.inject({ method: 'POST', url: '/api/messages/send-private', headers: api, payload: { recipientId: bob.id, content: 'while away' } })).statusCode, 200)
  const template = (await app.inject({ method: 'POST', url: '/api/templates', headers: { authorization: `Bearer ${accessTokenFor(app, sender)}` }, payload: { name: 't', content: 'Hi {{name}}' } })).json().template

  const raw: string[] = []
  const ws = new WebSocket(wsUrl(base, ticketFor(app, bob)))
  t.after(() => ws.terminate())
  let wake = () => {}
  ws.on('message', data => { raw.push(String(data)); wake() })
  const frameCount = async (count: number) => {
    const deadline = setTimeout(() => ws.terminate(), 15_000)
    while (raw.length < count && ws.readyState !== WebSocket.CLOSED) await new Promise<void>(resolve => { wake = resolve; ws.once('close', () => resolve()) })
    clearTimeout(deadline)
  }
  await frameCount(2) // ready, the replayed message
  t.equal((await app.inject({ method: 'POST', url: '/api/messages/send-template', headers: api, payload: { templateId: template.id, recipientIds: [bob.id], placeholders: { name: 'Bob' } } })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/api/messages/send-bulk', headers: api, payload: { recipientIds: [bob.id], content: 'live' } })).statusCode, 200)
  await frameCount(4)
  // The documented client frames are accepted: a ping is answered, an ack keeps the socket open.
  const ping = { type: 'ping' }
  const ack = { type: 'ack', ids: [JSON.parse(raw[1]).id] }
  t.ok(validators.PingFrame(ping) && validators.AckFrame(ack), 'the client frames sent here match their schemas')
  ws.send(JSON.stringify(ack))
  ws.send(JSON.stringify(ping))
  await frameCount(5)

  const frames = raw.map(text => JSON.parse(text))
  t.match(frames, [{ type: 'ready' }, { type: 'message', content: 'while away' }, { type: 'message', content: 'Hi Bob', templateId: template.id }, { type: 'message', content: 'live' }, { type: 'pong' }])
  for (const frame of frames) t.same(matching(frame), [`${frame.type[0].toUpperCase()}${frame.type.slice(1)}Frame`], `${frame.type} frame matches its schema`)
  t.same(matching({ type: 'message', id: 'x' }), [], 'a frame missing fields would not pass')
  t.equal(ws.readyState, WebSocket.OPEN)

  // A frame outside the documented client frames closes the socket with 1008.
  const extra = { type: 'ping', extra: true }
  t.notOk(validators.PingFrame(extra))
  const closed = new Promise<number>(resolve => ws.once('close', code => resolve(code)))
  ws.send(JSON.stringify(extra))
  t.equal(await closed, WsClose.POLICY_VIOLATION)
})
