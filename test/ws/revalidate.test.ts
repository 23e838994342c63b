import t from 'tap'
import { WebSocketServer, type WebSocket } from 'ws'
import { LocalHub } from '../../plugins/app/websocket/local.js'
import { buildApp, createUser } from '../helpers/app.js'
import { Peer } from './helpers.js'

/*
 * A resync (the Redis subscription came back) re-checks the users holding
 * sockets against the real store: removed users' sockets close with 4003, one
 * store query per batch of users whatever their number of sockets.
 */
t.test('a resync closes the sockets of removed users with 4003, checking users in batches', async t => {
  const app = await buildApp(t)
  let queries = 0
  const store = {
    pendingMessages: app.store.pendingMessages.bind(app.store),
    pendingRecipients: app.store.pendingRecipients.bind(app.store),
    usersPresent (ids: string[]) { queries++; return app.store.usersPresent(ids) }
  }
  const hub = new LocalHub({ store, log: app.log, sendBufferBytes: 1 << 20, heartbeatMs: 60_000, checkBatch: 2 })
  t.after(() => hub.stop())

  // A plain ws server hands each socket to the hub for the user named in its path.
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  t.after(() => new Promise(resolve => server.close(resolve)))
  server.on('connection', (socket: WebSocket, request) => hub.attach(socket, decodeURIComponent(request.url!.slice(1)), null))
  await new Promise(resolve => server.once('listening', resolve))
  const base = `ws://127.0.0.1:${(server.address() as { port: number }).port}/`

  const users = await Promise.all([1, 2, 3, 4, 5].map(() => createUser(app)))
  const peers = new Map<string, Peer[]>()
  for (const user of users) peers.set(user.id, [await Peer.ready(t, base + user.id), await Peer.ready(t, base + user.id)])
  t.equal(hub.connections, 10)

  const [removedA, kept1, removedB, kept2, kept3] = users
  for (const user of [removedA, removedB]) await app.store.deleteUser({ id: user.id })
  hub.resync()

  for (const user of [removedA, removedB]) {
    for (const peer of peers.get(user.id)!) t.same((await peer.untilClosed()).closed, { code: 4003, reason: 'user removed' }, 'a removed user\'s socket closes with 4003')
  }
  t.equal(queries, 3, 'five users, two per query: three queries for ten sockets')
  t.equal(hub.connections, 6)
  for (const user of [kept1, kept2, kept3]) {
    for (const peer of peers.get(user.id)!) t.equal(peer.ws.readyState, peer.ws.OPEN, 'a user still present keeps the socket')
  }
})
