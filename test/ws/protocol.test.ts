import t from 'tap'
import type { Socket } from 'node:net'
import { buildApp, createUser } from '../helpers/app.js'
import { listen, Peer, sendDirect, ticketFor, wsUrl } from './helpers.js'

t.test('frames', async t => {
  const app = await buildApp(t)
  const base = await listen(app)
  const user = await createUser(app)
  const open = async (t: Parameters<typeof Peer.ready>[0]) => await Peer.ready(t, wsUrl(base, ticketFor(app, user)))

  t.test('open sockets and delivered frames show in the metrics', async t => {
    const counted = await createUser(app)
    const peer = await Peer.ready(t, wsUrl(base, ticketFor(app, counted)))
    await sendDirect(app, counted, [counted.id], 'counted')
    t.match(await peer.next(), { type: 'message', content: 'counted' })
    const metrics = (await app.inject('/metrics')).body
    t.match(metrics, /^gatehouse_ws_connections 1$/m)
    t.match(metrics, /^gatehouse_ws_users 1$/m)
    t.match(metrics, /^gatehouse_ws_frames_delivered_total [1-9]\d*$/m)
  })

  t.test('ping is answered with pong', async t => {
    const peer = await open(t)
    peer.ws.send(JSON.stringify({ type: 'ping' }))
    t.same(await peer.next(), { type: 'pong' })
  })

  const invalid: Array<[string, string | Buffer]> = [
    ['not JSON', 'hello'],
    ['an unknown type', JSON.stringify({ type: 'subscribe', channel: 'x' })],
    ['an ack of something that is not a message id', JSON.stringify({ type: 'ack', ids: ['1 or 1=1'] })],
    ['an ack of too many ids', JSON.stringify({ type: 'ack', ids: Array.from({ length: 1001 }, () => crypto.randomUUID()) })],
    ['an ack without ids', JSON.stringify({ type: 'ack', ids: [] })],
    ['a binary frame', Buffer.from(JSON.stringify({ type: 'ping' }))]
  ]
  for (const [what, frame] of invalid) {
    t.test(`${what} closes the socket with 1008`, async t => {
      const peer = await open(t)
      peer.ws.send(frame)
      const { closed } = await peer.untilClosed()
      t.equal(closed.code, 1008)
    })
  }

  t.test('a frame over 64 KiB closes the socket with 1009', async t => {
    const peer = await open(t)
    peer.ws.send(JSON.stringify({ type: 'ack', ids: [], padding: 'x'.repeat(65 * 1024) }))
    const { closed } = await peer.untilClosed()
    t.equal(closed.code, 1009)
  })
})

t.test('disconnectUser closes every socket of that user with 4003, and only theirs', async t => {
  const app = await buildApp(t)
  const base = await listen(app)
  const [sender, mallory, other] = [await createUser(app), await createUser(app), await createUser(app)]
  const mallorys = [await Peer.ready(t, wsUrl(base, ticketFor(app, mallory))), await Peer.ready(t, wsUrl(base, ticketFor(app, mallory)))]
  const bystander = await Peer.ready(t, wsUrl(base, ticketFor(app, other)))
  t.equal(app.hub.connections, 3)

  await app.hub.disconnectUser(mallory.id, 4003, 'revoked')
  for (const peer of mallorys) t.equal((await peer.untilClosed()).closed.code, 4003)

  const [id] = await sendDirect(app, sender, [other.id], 'still here')
  t.match(await bystander.next(), { type: 'message', id })
  t.equal(app.hub.connections, 1)
})

t.test('a socket lives no longer than the session its ticket was issued for: 4001', async t => {
  const app = await buildApp(t)
  const base = await listen(app)
  const user = await createUser(app)
  const peer = await Peer.ready(t, wsUrl(base, ticketFor(app, user, Math.floor(Date.now() / 1000) + 1)))
  t.equal((await peer.untilClosed()).closed.code, 4001)
})

t.test('closing the server closes every socket with 1001', async t => {
  const app = await buildApp(t)
  const base = await listen(app)
  const [a, b] = [await createUser(app), await createUser(app)]
  const peers = [await Peer.ready(t, wsUrl(base, ticketFor(app, a))), await Peer.ready(t, wsUrl(base, ticketFor(app, b)))]
  await app.close()
  for (const peer of peers) t.equal((await peer.untilClosed()).closed.code, 1001)
})

t.test('closing the server does not wait for a peer that never answers the close', async t => {
  const app = await buildApp(t)
  const base = await listen(app)
  const user = await createUser(app)
  const peer = await Peer.ready(t, wsUrl(base, ticketFor(app, user)))
  const raw = (peer.ws as unknown as { _socket: Socket })._socket
  raw.pause()
  await app.close()
  t.equal(app.hub.connections, 0)
  raw.resume()
  // The connection was cut: whatever the peer reads last, the socket ends.
  t.ok([1001, 1006].includes((await peer.untilClosed()).closed.code))
})

t.test('heartbeat: a peer that stops answering pings is dropped, a live one stays', async t => {
  const app = await buildApp(t, { env: { WS_HEARTBEAT_MS: '200' } })
  const base = await listen(app)
  const [sender, user] = [await createUser(app), await createUser(app)]
  const live = await Peer.ready(t, wsUrl(base, ticketFor(app, user)))
  const dead = await Peer.ready(t, wsUrl(base, ticketFor(app, user)), { autoPong: false })

  // Dropped without a close frame: the server terminates the connection.
  t.equal((await dead.untilClosed()).closed.code, 1006)
  const [id] = await sendDirect(app, sender, [user.id], 'after several heartbeats')
  t.match(await live.next(), { type: 'message', id })
  t.equal(app.hub.connections, 1)
})

t.test('a stalled reader is closed with 4008 while the others keep receiving; it gets everything on reconnect', async t => {
  const app = await buildApp(t, { env: { WS_SEND_BUFFER_BYTES: '65536', MAX_CONTENT_BYTES: '32768' } })
  const base = await listen(app)
  const [sender, slow, fast1, fast2] = [await createUser(app), await createUser(app), await createUser(app), await createUser(app)]
  const stalled = await Peer.ready(t, wsUrl(base, ticketFor(app, slow)))
  const active = [await Peer.ready(t, wsUrl(base, ticketFor(app, fast1))), await Peer.ready(t, wsUrl(base, ticketFor(app, fast2)))]

  // Stop reading: the server's writes fill the TCP buffers, then its own send buffer.
  const raw = (stalled.ws as unknown as { _socket: Socket })._socket
  raw.pause()

  const content = 'x'.repeat(32 * 1024)
  const sentToSlow: string[] = []
  const sentToActive: string[][] = [[], []]
  const receivedByActive: string[][] = [[], []]
  for (let i = 0; app.hub.connections === 3; i++) {
    if (i === 2000) throw new Error('the stalled reader was never closed')
    const [slowId, ...activeIds] = await sendDirect(app, sender, [slow.id, fast1.id, fast2.id], content)
    sentToSlow.push(slowId)
    for (const [k, peer] of active.entries()) {
      sentToActive[k].push(activeIds[k])
      receivedByActive[k].push((await peer.messages(1))[0].id)
    }
  }
  t.equal(app.hub.connections, 2, 'only the stalled reader was closed')
  t.same(receivedByActive, sentToActive, 'the active readers received every message meanwhile')
  t.comment(`stalled after ${sentToSlow.length} messages`)

  const [afterSlow, ...afterActive] = await sendDirect(app, sender, [slow.id, fast1.id, fast2.id], 'after')
  sentToSlow.push(afterSlow)
  for (const [k, peer] of active.entries()) t.match(await peer.next(), { type: 'message', id: afterActive[k], content: 'after' })

  raw.resume()
  const { closed } = await stalled.untilClosed()
  t.equal(closed.code, 4008)

  const again = await Peer.ready(t, wsUrl(base, ticketFor(app, slow)))
  t.same((await again.messages(sentToSlow.length)).map(m => m.id), sentToSlow, 'every message replayed, in order')
})
