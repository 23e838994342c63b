import t, { type Test } from 'tap'
import WebSocket from 'ws'
import type { FastifyInstance } from 'fastify'
import { GatehouseClient, type ClientOptions, type ClientStatus, type FetchLike, type Message } from '../../client/index.js'
import { accessTokenFor, buildApp, createUser } from '../helpers/app.js'
import type { User } from '../../schemas/users.js'
import { listen, sendDirect } from '../ws/helpers.js'
import { batchOf } from '../../plugins/app/websocket/index.js'

/** A client under test: what it handed over, its statuses, and the frames it saw on the wire. */
function start (t: Test, options: Omit<ClientOptions, 'onMessage'>, before: (message: Message) => void = () => {}) {
  const handled: Message[] = []
  const statuses: ClientStatus[] = []
  const wire: Array<{ type: string, id?: string }> = []
  let wake = () => {}
  class RecordingWebSocket extends WebSocket {
    constructor (url: string) {
      super(url)
      this.on('message', data => { wire.push(JSON.parse(String(data))) })
    }
  }
  const client = new GatehouseClient({
    WebSocket: RecordingWebSocket,
    backoff: { initialMs: 20, maxMs: 200 },
    ...options,
    onMessage: message => {
      before(message)
      handled.push(message)
      wake()
    },
    onStatus: status => { statuses.push(status); wake() }
  })
  t.after(() => client.close())
  client.start()
  /** Resolves once `done()` holds, re-checked after every message and status. */
  const until = async (done: () => boolean) => {
    while (!done()) await new Promise<void>(resolve => { wake = resolve })
  }
  const readies = () => statuses.filter(s => s.state === 'ready').length
  return { client, handled, statuses, wire, until, readies }
}

async function pendingCount (app: FastifyInstance, user: User) {
  return (await app.store.pendingMessages(user.id, 0, 1000)).length
}

async function untilAcked (app: FastifyInstance, user: User) {
  while (await pendingCount(app, user) > 0) await new Promise(resolve => setTimeout(resolve, 20))
}

t.test('client', async t => {
  const app = await buildApp(t)
  const url = await listen(app)
  const sender = await createUser(app)

  t.test('gets a ticket with the access token, receives replayed then live messages, and acks them in batches', async t => {
    const user = await createUser(app)
    const early = await sendDirect(app, sender, [user.id], 'while offline')
    const c = start(t, { url, accessToken: accessTokenFor(app, user), ackBatchSize: 2, ackDelayMs: 50 })
    await c.until(() => c.readies() === 1)
    const live = [
      ...await sendDirect(app, sender, [user.id], 'live 1'),
      ...await sendDirect(app, sender, [user.id], 'live 2')
    ]
    await c.until(() => c.handled.length === 3)
    t.same(c.handled.map(m => m.id), [...early, ...live])
    t.match(c.handled[0], { senderId: sender.id, content: 'while offline', createdAt: String })
    t.notOk('type' in c.handled[0], 'the handler gets the message, not the frame')
    await untilAcked(app, user)
    t.pass('every message acknowledged')
  })

  t.test('hands a message delivered twice to the handler once', async t => {
    const user = await createUser(app)
    const c = start(t, { url, accessToken: accessTokenFor(app, user) })
    await c.until(() => c.readies() === 1)
    const outcome = await app.store.send({
      senderId: sender.id, senderOrganizationId: sender.organizationId, senderIsAdmin: false, recipientIds: [user.id], content: 'twice', templateId: null, idempotencyKey: null, requestHash: null
    })
    if (!outcome.ok) throw new Error('send refused')
    const batch = batchOf({ senderId: sender.id, content: 'twice', templateId: null }, outcome.result)
    await app.hub.publish(batch)
    await app.hub.publish(batch)
    const [after] = await sendDirect(app, sender, [user.id], 'after')
    await c.until(() => c.handled.some(m => m.id === after))
    t.equal(c.wire.filter(f => f.type === 'message').length, 3, 'three frames on the wire')
    t.same(c.handled.map(m => m.content), ['twice', 'after'], 'two messages handed over')
  })

  t.test('remembers a bounded number of ids', async t => {
    const user = await createUser(app)
    const c = start(t, { url, accessToken: accessTokenFor(app, user), dedupeSize: 1 })
    await c.until(() => c.readies() === 1)
    const batches = []
    for (const content of ['a', 'b']) {
      const outcome = await app.store.send({
        senderId: sender.id, senderOrganizationId: sender.organizationId, senderIsAdmin: false, recipientIds: [user.id], content, templateId: null, idempotencyKey: null, requestHash: null
      })
      if (!outcome.ok) throw new Error('send refused')
      batches.push(batchOf({ senderId: sender.id, content, templateId: null }, outcome.result))
    }
    for (const batch of [batches[0], batches[1], batches[1], batches[0]]) await app.hub.publish(batch)
    await c.until(() => c.wire.filter(f => f.type === 'message').length === 4 && c.handled.length >= 3)
    t.same(c.handled.map(m => m.content), ['a', 'b', 'a'], 'b is remembered, a was forgotten')
  })

  t.test('reconnects after the server drops it and gets what it missed, once', async t => {
    const user = await createUser(app)
    // Acks held back: the first message is still unacknowledged when the socket drops.
    const c = start(t, { url, accessToken: accessTokenFor(app, user), ackDelayMs: 60_000, ackBatchSize: 1000 })
    await c.until(() => c.readies() === 1)
    const [first] = await sendDirect(app, sender, [user.id], 'before the drop')
    await c.until(() => c.handled.length === 1)

    await app.hub.disconnectUser(user.id, 1012, 'service restart')
    const [missed] = await sendDirect(app, sender, [user.id], 'while away')
    await c.until(() => c.readies() === 2 && c.handled.length === 2)
    const [live] = await sendDirect(app, sender, [user.id], 'back')
    await c.until(() => c.handled.length === 3)

    t.match(c.statuses.find(s => s.state === 'disconnected'), { code: 1012 })
    t.same(c.handled.map(m => m.id), [first, missed, live], 'each message handed over once, in order')
    c.client.close()
    await untilAcked(app, user)
    t.pass('acks waiting at close are sent')
  })

  t.test('a failing handler leaves its message unacknowledged, to be handed over again after a reconnect', async t => {
    const user = await createUser(app)
    let failures = 1
    const attempts: string[] = []
    const c = start(t, { url, accessToken: accessTokenFor(app, user), onError: () => {}, ackDelayMs: 10 }, message => {
      attempts.push(message.id)
      if (failures-- > 0) throw new Error('handler failed')
    })
    await c.until(() => c.readies() === 1)
    const [id] = await sendDirect(app, sender, [user.id], 'retry me')
    while (attempts.length === 0) await new Promise(resolve => setTimeout(resolve, 10))
    t.equal(await pendingCount(app, user), 1, 'not acknowledged')

    await app.hub.disconnectUser(user.id, 1012, 'service restart')
    await c.until(() => c.handled.length === 1)
    t.same(attempts, [id, id])
    await untilAcked(app, user)
  })

  t.test('on 4001 it fetches a new ticket and reconnects', async t => {
    const user = await createUser(app)
    let tickets = 0
    // The first ticket's session ends in a second; later ones come from the real endpoint.
    const fetchTickets: FetchLike = async (input, init) => {
      if (tickets++ === 0) {
        const token = app.tokens.issueWsTicket(user.id, Math.floor(Date.now() / 1000) + 1).token
        return { status: 200, ok: true, json: async () => ({ token, expires_in: 60 }) }
      }
      return await fetch(input, init)
    }
    const c = start(t, { url, accessToken: accessTokenFor(app, user), fetch: fetchTickets })
    await c.until(() => c.readies() === 2)
    t.match(c.statuses.find(s => s.state === 'disconnected'), { code: 4001, retryInMs: 0 })
    t.equal(tickets, 2)
    const [id] = await sendDirect(app, sender, [user.id], 'after renewal')
    await c.until(() => c.handled.length === 1)
    t.equal(c.handled[0].id, id)
  })

  t.test('stops for good on 4003', async t => {
    const user = await createUser(app)
    const c = start(t, { url, accessToken: accessTokenFor(app, user) })
    await c.until(() => c.readies() === 1)
    await app.hub.disconnectUser(user.id, 4003, 'revoked')
    t.equal(await c.client.stopped, 'revoked')
    t.equal(c.statuses.filter(s => s.state === 'connecting').length, 1, 'no reconnect attempt')
  })

  t.test('stops when the ticket endpoint refuses the access token', async t => {
    const c = start(t, { url, accessToken: 'not-a-token' })
    t.equal(await c.client.stopped, 'unauthorized')
  })

  t.test('without an access token it asks for the ticket with the cookie (credentials: include)', async t => {
    const user = await createUser(app)
    const seen: Array<Parameters<FetchLike>[1]> = []
    // What a browser does with credentials: 'include': the cookie goes along.
    const browserFetch: FetchLike = async (input, init) => {
      seen.push(init)
      return await fetch(input, { ...init, headers: { ...init.headers, cookie: `access_token=${accessTokenFor(app, user)}` } })
    }
    const c = start(t, { url, fetch: browserFetch })
    await c.until(() => c.readies() === 1)
    t.equal(seen[0].credentials, 'include')
    t.notOk('authorization' in seen[0].headers)
  })

  t.test('retries with backoff while the ticket endpoint fails', async t => {
    const user = await createUser(app)
    let calls = 0
    const flaky: FetchLike = async (input, init) => {
      if (++calls <= 2) return { status: 503, ok: false, json: async () => ({}) }
      return await fetch(input, init)
    }
    const c = start(t, { url, accessToken: accessTokenFor(app, user), fetch: flaky, onError: () => {} })
    await c.until(() => c.readies() === 1)
    t.equal(calls, 3)
    const delays = c.statuses.flatMap(s => s.state === 'disconnected' ? [s.retryInMs] : [])
    t.equal(delays.length, 2)
    t.ok(delays[0] < 20 && delays[1] < 40, 'full jitter below the doubling cap')
  })

  t.test('retries a refused upgrade on a runtime that reports it with an error and no close', async t => {
    const user = await createUser(app)
    // The `ws` socket, behaving as some built-in WebSockets do: a failed handshake fires no close.
    class NoCloseOnRefusal extends WebSocket {
      private opened = false
      constructor (url: string) {
        super(url)
        this.on('open', () => { this.opened = true })
      }

      addEventListener (type: string, listener: (event: any) => void) {
        super.addEventListener(type as 'close', type === 'close' ? event => { if (this.opened) listener(event) } : listener)
      }
    }
    let tickets = 0
    const refusedTwice: FetchLike = async (input, init) => {
      if (++tickets <= 2) return { status: 200, ok: true, json: async () => ({ token: 'not-a-ticket' }) }
      return await fetch(input, init)
    }
    const c = start(t, { url, accessToken: accessTokenFor(app, user), fetch: refusedTwice, WebSocket: NoCloseOnRefusal })
    await c.until(() => c.readies() === 1)
    t.equal(tickets, 3, 'a new ticket after each refusal')
    t.same(c.statuses.map(s => s.state), ['connecting', 'disconnected', 'connecting', 'disconnected', 'connecting', 'ready'])
  })

  t.test("with ack: 'manual' only what ack() is given is acknowledged", async t => {
    const user = await createUser(app)
    const [first] = await sendDirect(app, sender, [user.id], 'read me')
    const [second] = await sendDirect(app, sender, [user.id], 'and me')
    const c = start(t, { url, accessToken: accessTokenFor(app, user), ack: 'manual', ackDelayMs: 0 })
    await c.until(() => c.handled.length === 2)
    c.client.ack(second)
    while (await pendingCount(app, user) > 1) await new Promise(resolve => setTimeout(resolve, 20))
    t.same((await app.store.pendingMessages(user.id, 0, 10)).map(m => m.id), [first], 'the other stays for replay')
  })
})

t.test('without a global WebSocket the WebSocket option is required', async t => {
  // Node 22+ has a global WebSocket; the runtimes this guards against (Node 20, some bundles) do not.
  const global = globalThis as { WebSocket?: unknown }
  const builtIn = Object.getOwnPropertyDescriptor(global, 'WebSocket')
  delete global.WebSocket
  t.teardown(() => { if (builtIn) Object.defineProperty(global, 'WebSocket', builtIn) })
  t.throws(() => new GatehouseClient({ url: 'http://127.0.0.1:1', onMessage: () => {} }), /WebSocket option/)
})
