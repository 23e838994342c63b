import t from 'tap'
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { WebSocket } from 'ws'
import { buildApp, createUser } from '../helpers/app.js'
import { listen, Peer, sendDirect, ticketFor, wsUrl } from './helpers.js'

// What an open, idle socket keeps in memory: 10,000 of them must fit in little.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

async function collected (ref: WeakRef<object>): Promise<boolean> {
  for (let i = 0; i < 20 && ref.deref() !== undefined; i++) {
    await new Promise(resolve => setTimeout(resolve, 20))
    gc()
  }
  return ref.deref() === undefined
}

t.test('an open socket lets go of the HTTP request that opened it, and still works', async t => {
  const app = await buildApp(t)
  const base = await listen(app)
  const user = await createUser(app)
  let upgrade: WeakRef<IncomingMessage> | undefined
  const remember = (request: IncomingMessage) => { upgrade = new WeakRef(request) }
  app.server.prependListener('upgrade', remember)
  const peer = await Peer.ready(t, wsUrl(base, ticketFor(app, user)))
  app.server.off('upgrade', remember)

  t.ok(upgrade, 'the upgrade request was seen')
  t.ok(await collected(upgrade!), 'the upgrade request (headers, URL with the ticket, reply) is garbage once the socket is open')

  // The socket is the same as before: pings, deliveries, and a peer error closes it with a code.
  peer.ws.send(JSON.stringify({ type: 'ping' }))
  t.same(await peer.next(), { type: 'pong' })
  await sendDirect(app, user, [user.id], 'still here')
  t.match(await peer.next(), { type: 'message', content: 'still here' })
  peer.ws.send(Buffer.alloc(70 * 1024, 'x').toString())
  t.equal((await peer.closed).code, 1009, 'a frame over 64 KiB still closes the socket with 1009')
})

t.test('idle sockets share their listeners and keep neither the ticket nor a reservation listener', async t => {
  const app = await buildApp(t)
  const base = await listen(app)
  const users = [await createUser(app), await createUser(app)]
  const sockets: WebSocket[] = []
  const connections: Socket[] = []
  const claims: Array<WeakRef<object>> = []
  const attach = app.hub.attach
  app.hub.attach = (socket, session) => {
    sockets.push(socket)
    attach(socket, session)
  }
  const redeem = app.tokens.redeemWsTicket.bind(app.tokens)
  app.tokens.redeemWsTicket = async (token) => {
    const redeemed = await redeem(token)
    claims.push(new WeakRef(redeemed))
    return redeemed
  }
  const remember = (request: IncomingMessage) => { connections.push(request.socket as Socket) }
  app.server.prependListener('upgrade', remember)
  const peers = [await Peer.ready(t, wsUrl(base, ticketFor(app, users[0]))), await Peer.ready(t, wsUrl(base, ticketFor(app, users[1])))]
  app.server.off('upgrade', remember)

  t.equal(sockets.length, 2)
  for (const event of ['message', 'pong', 'close', 'error']) {
    const [first, second] = sockets.map(socket => socket.listeners(event))
    t.equal(first.length, 1, `one '${event}' listener`)
    t.equal(first[0], second[0], `both sockets share the same '${event}' listener`)
  }
  // ws listens for the TCP socket's close; the place held while opening no longer does.
  t.same(connections.map(connection => connection.listenerCount('close')), [1, 1], 'only ws\'s own close listener is left on the TCP socket')
  t.equal(claims.length, 2)
  for (const ref of claims) t.ok(await collected(ref), 'a redeemed ticket\'s claims are garbage once the socket is open')

  // The shared listeners still tell the sockets apart: acks are written for the right user.
  await sendDirect(app, users[1], [users[0].id], 'for the first')
  const frame = await peers[0].next() as { id: string }
  peers[0].ws.send(JSON.stringify({ type: 'ack', ids: [frame.id] }))
  peers[0].ws.send(JSON.stringify({ type: 'ping' }))
  t.same(await peers[0].next(), { type: 'pong' }, 'the ack was read, then the ping')
  const pending = await app.store.pendingMessages(users[0].id, 0, 10)
  t.same(pending, [], 'the first user\'s message is acknowledged')
  peers[1].ws.send('not json')
  t.equal((await peers[1].closed).code, 1008, 'an invalid frame closes that socket only')
  peers[0].ws.send(JSON.stringify({ type: 'ping' }))
  t.same(await peers[0].next(), { type: 'pong' }, 'the other socket is still open')
})

t.test('a user with several sockets: each gets deliveries, any may close, and the user can be disconnected everywhere', async t => {
  const app = await buildApp(t)
  const base = await listen(app)
  const [user, sender] = [await createUser(app), await createUser(app)]
  const peers = [
    await Peer.ready(t, wsUrl(base, ticketFor(app, user))),
    await Peer.ready(t, wsUrl(base, ticketFor(app, user))),
    await Peer.ready(t, wsUrl(base, ticketFor(app, user)))
  ]
  t.equal(app.hub.socketsOf(user.id), 3)
  await sendDirect(app, sender, [user.id], 'to all three')
  for (const peer of peers) t.match(await peer.next(), { type: 'message', content: 'to all three' })

  for (const peer of peers.slice(0, 2)) {
    peer.ws.close()
    await peer.closed
  }
  while (app.hub.socketsOf(user.id) > 1) await new Promise(resolve => setTimeout(resolve, 10))
  await sendDirect(app, sender, [user.id], 'to the one left')
  t.match(await peers[2].next(), { type: 'message', content: 'to the one left' }, 'the socket left open still gets deliveries')

  const another = await Peer.ready(t, wsUrl(base, ticketFor(app, user)))
  t.equal(app.hub.socketsOf(user.id), 2)
  await app.hub.disconnectUser(user.id, 4003, 'user removed')
  for (const peer of [peers[2], another]) t.match(await peer.closed, { code: 4003, reason: 'user removed' })
  t.equal(app.hub.socketsOf(user.id), 0, 'no socket of the user is left')
})
