import t, { type Test } from 'tap'
import { apiTokenFor, buildApp, createUser } from '../helpers/app.js'
import { testBackends } from '../helpers/backends.js'
import { batchOf } from '../../plugins/app/websocket/index.js'
import { listen, Peer, sendDirect, ticketFor, wsUrl } from './helpers.js'

for (const backend of testBackends()) {
  t.test(`delivery on ${backend.name}`, { skip: backend.skip }, async t => {
    const app = await buildApp(t, { driver: await backend.driver(t) })
    const base = await listen(app)
    const sender = await createUser(app)
    const connect = async (t: Test, user: { id: string }) => await Peer.ready(t, wsUrl(base, app.tokens.issueWsTicket(user.id).token))

    t.test('every online recipient, on every socket, receives its message', async t => {
      const [alice, bob] = [await createUser(app), await createUser(app)]
      const alicePhone = await connect(t, alice)
      const aliceLaptop = await connect(t, alice)
      const bobPeer = await connect(t, bob)

      const [aliceId, bobId] = await sendDirect(app, sender, [alice.id, bob.id], 'hello everyone')
      for (const peer of [alicePhone, aliceLaptop]) {
        t.match(await peer.next(), { type: 'message', id: aliceId, senderId: sender.id, content: 'hello everyone', createdAt: String })
      }
      const [frame] = await bobPeer.messages(1)
      t.equal(frame.id, bobId)
      t.notOk('templateId' in frame, 'no templateId for a plain send')
    })

    t.test('an offline recipient gets its messages oldest first when it connects, then live ones', async t => {
      const carol = await createUser(app)
      const sent = []
      for (const text of ['one', 'two', 'three']) sent.push(...await sendDirect(app, sender, [carol.id], text))

      const peer = await connect(t, carol)
      const replayed = await peer.messages(3)
      t.same(replayed.map(m => m.id), sent)
      t.same(replayed.map(m => m.content), ['one', 'two', 'three'])

      const [live] = await sendDirect(app, sender, [carol.id], 'four')
      t.equal((await peer.next() as { id: string }).id, live)
    })

    t.test('acknowledged messages are not replayed, unacknowledged ones are', async t => {
      const dave = await createUser(app)
      const first = await connect(t, dave)
      const ids = [
        ...await sendDirect(app, sender, [dave.id], 'a'),
        ...await sendDirect(app, sender, [dave.id], 'b'),
        ...await sendDirect(app, sender, [dave.id], 'c')
      ]
      t.same((await first.messages(3)).map(m => m.id), ids)
      first.ack([ids[0]])
      first.ws.close()
      await first.closed

      // The ack is written while the socket closes; wait until the store has it.
      while ((await app.store.pendingMessages(dave.id, 0, 10)).length > 2) await new Promise(resolve => setTimeout(resolve, 10))

      const second = await connect(t, dave)
      t.same((await second.messages(2)).map(m => m.id), ids.slice(1), 'only the unacknowledged two')
      second.ack(ids.slice(1))
      while ((await app.store.pendingMessages(dave.id, 0, 10)).length > 0) await new Promise(resolve => setTimeout(resolve, 10))
      second.ws.close()

      const third = await connect(t, dave)
      const [marker] = await sendDirect(app, sender, [dave.id], 'new')
      t.equal((await third.next() as { id: string }).id, marker, 'nothing replayed before the new message')
    })

    t.test('messages sent through the HTTP API reach their recipients', async t => {
      const erin = await createUser(app)
      const frank = await createUser(app)
      const peers = [await connect(t, erin), await connect(t, frank)]
      const { token } = await apiTokenFor(app, sender)
      const res = await app.inject({
        method: 'POST',
        url: '/api/messages/send-bulk',
        headers: { authorization: `Bearer ${token}` },
        payload: { recipientIds: [erin.id, frank.id], content: 'over http' }
      })
      t.equal(res.statusCode, 200)
      const { messages } = res.json() as { messages: Array<{ id: string, recipientId: string }> }
      for (const [i, user] of [erin, frank].entries()) {
        const [frame] = await peers[i].messages(1)
        t.match(frame, { id: messages.find(m => m.recipientId === user.id)?.id, senderId: sender.id, content: 'over http' })
      }
    })

    t.test('a bulk send is one message id, and the same text frame on every socket', async t => {
      const users = [await createUser(app), await createUser(app), await createUser(app)]
      const peers = [...await Promise.all(users.map(user => connect(t, user))), await connect(t, users[0])]
      const { token } = await apiTokenFor(app, sender)
      const res = await app.inject({
        method: 'POST',
        url: '/api/messages/send-bulk',
        headers: { authorization: `Bearer ${token}` },
        payload: { recipientIds: users.map(u => u.id), content: 'one frame for all' }
      })
      t.equal(res.statusCode, 200)
      const { messages } = res.json() as { messages: Array<{ id: string, recipientId: string }> }
      t.same(messages.map(m => m.recipientId), users.map(u => u.id), 'one message per recipient')
      const [id] = messages.map(m => m.id)
      t.ok(messages.every(m => m.id === id), 'every recipient\'s message has the send\'s id')
      for (const peer of peers) t.match(await peer.messages(1), [{ id, content: 'one frame for all' }])
      const frames = peers.map(peer => peer.wire.at(-1))
      t.ok(frames.every(frame => frame?.binary === false), 'text frames')
      t.equal(new Set(frames.map(frame => frame?.text)).size, 1, 'the same bytes on every socket')

      // Acked by one recipient, the message is still pending for the others.
      peers[1].ack([id])
      while ((await app.store.pendingMessages(users[1].id, 0, 10)).length > 0) await new Promise(resolve => setTimeout(resolve, 10))
      t.match(await app.store.pendingMessages(users[2].id, 0, 10), [{ id }], 'another recipient\'s ack acks nothing of theirs')
    })

    t.test('a batch with one id per message (from a process of the previous version) reaches each recipient with its own id', async t => {
      const users = [await createUser(app), await createUser(app)]
      const peers = await Promise.all(users.map(user => connect(t, user)))
      // Only published, not stored: a replay racing the connect has nothing of it to add.
      const ownIds = [crypto.randomUUID(), crypto.randomUUID()]
      const batch = batchOf({ senderId: sender.id, content: 'mixed', templateId: null }, {
        count: 2,
        messages: users.map((u, i) => ({ id: ownIds[i], recipientId: u.id })),
        seqs: [Number.MAX_SAFE_INTEGER - 1, Number.MAX_SAFE_INTEGER],
        createdAt: new Date().toISOString(),
        replayed: false
      })
      await app.hub.publish(batch)
      for (const [i, peer] of peers.entries()) t.match(await peer.messages(1), [{ id: ownIds[i], content: 'mixed' }])
    })
  })
}

t.test('a long backlog replays in order while live messages keep arriving', async t => {
  const app = await buildApp(t)
  const base = await listen(app)
  const sender = await createUser(app)
  const grace = await createUser(app)

  const backlog = 1200 // more than two replay pages
  const sent: string[] = []
  for (let i = 0; i < backlog; i++) sent.push(...await sendDirect(app, sender, [grace.id], `backlog ${i}`))

  const peer = await Peer.ready(t, wsUrl(base, ticketFor(app, grace)))
  // Sent while the replay runs: some are held, some overflow into another replay pass.
  const live = (async () => {
    for (let i = 0; i < 300; i++) sent.push(...await sendDirect(app, sender, [grace.id], `live ${i}`))
  })()

  const firstSeen: string[] = []
  const seen = new Set<string>()
  await live
  while (seen.size < sent.length) {
    const [frame] = await peer.messages(1)
    if (!seen.has(frame.id)) firstSeen.push(frame.id)
    seen.add(frame.id)
  }
  t.equal(seen.size, backlog + 300, 'every message arrived')
  t.same(firstSeen, sent, 'in the order they were stored')
})

t.test('live messages that arrive while a slow replay query runs are delivered after it, in order', async t => {
  for (const live of [20, 250]) { // fewer than the socket holds, then more (another replay pass reads them)
    t.test(`${live} live messages`, async t => {
      const app = await buildApp(t)
      const base = await listen(app)
      const sender = await createUser(app)
      const henry = await createUser(app)
      const sent: string[] = []
      for (let i = 0; i < 5; i++) sent.push(...await sendDirect(app, sender, [henry.id], `backlog ${i}`))

      // The first replay query reads its rows, then answers only after the live sends.
      const pending = app.store.pendingMessages.bind(app.store)
      let release!: () => void
      const released = new Promise<void>(resolve => { release = resolve })
      let queried!: () => void
      const firstQuery = new Promise<void>(resolve => { queried = resolve })
      let calls = 0
      app.store.pendingMessages = async (...args) => {
        const rows = await pending(...args)
        if (calls++ === 0) {
          queried()
          await released
        }
        return rows
      }

      const peer = await Peer.ready(t, wsUrl(base, ticketFor(app, henry)))
      await firstQuery
      for (let i = 0; i < live; i++) sent.push(...await sendDirect(app, sender, [henry.id], `live ${i}`))
      release()

      const received = (await peer.messages(sent.length)).map(m => m.id)
      t.same(received, sent, 'every message once, in the order stored')
      const [marker] = await sendDirect(app, sender, [henry.id], 'marker')
      t.match(await peer.next(), { type: 'message', id: marker }, 'then live again')
    })
  }
})

t.test('a message committed just before the replay query and published during replay arrives once', async t => {
  const app = await buildApp(t)
  const base = await listen(app)
  const sender = await createUser(app)
  const ivy = await createUser(app)
  const [backlog] = await sendDirect(app, sender, [ivy.id], 'backlog')

  // Store the message, let the replay query read it, and only then publish it live.
  const pending = app.store.pendingMessages.bind(app.store)
  const publish = app.hub.publish.bind(app.hub)
  let batch: Parameters<typeof publish>[0] | undefined
  app.hub.publish = async b => { batch = b }
  let calls = 0
  app.store.pendingMessages = async (...args) => {
    if (calls++ === 0) await sendDirect(app, sender, [ivy.id], 'raced')
    const rows = await pending(...args)
    if (batch) await publish(batch)
    return rows
  }

  const peer = await Peer.ready(t, wsUrl(base, ticketFor(app, ivy)))
  t.match(await peer.next(), { type: 'message', id: backlog })
  t.match(await peer.next(), { type: 'message', content: 'raced' })
  app.hub.publish = publish
  const [marker] = await sendDirect(app, sender, [ivy.id], 'marker')
  t.match(await peer.next(), { type: 'message', id: marker }, 'the next frame is the next message, not the raced one again')
})

t.test('a message committed while the store is asked whether anything is pending arrives once', async t => {
  const app = await buildApp(t)
  const base = await listen(app)
  const sender = await createUser(app)
  const jude = await createUser(app)

  // Nothing pending when the socket connects; a message is stored as the question is
  // asked, and published live while its answer is on its way back.
  const pendingRecipients = app.store.pendingRecipients.bind(app.store)
  const publish = app.hub.publish.bind(app.hub)
  let batch: Parameters<typeof publish>[0] | undefined
  app.hub.publish = async b => { batch = b }
  for (const raceBefore of [true, false]) {
    t.test(raceBefore ? 'committed before the question: read by the replay' : 'committed after it: delivered live', async t => {
      batch = undefined
      let calls = 0
      app.store.pendingRecipients = async ids => {
        if (calls++ === 0 && raceBefore) await sendDirect(app, sender, [jude.id], 'raced')
        const answer = await pendingRecipients(ids)
        if (calls === 1 && !raceBefore) await sendDirect(app, sender, [jude.id], 'raced')
        if (batch) await publish(batch)
        return answer
      }
      const peer = await Peer.ready(t, wsUrl(base, ticketFor(app, jude)))
      const raced = await peer.next()
      t.match(raced, { type: 'message', content: 'raced' })
      await app.store.ack(jude.id, [(raced as { id: string }).id])
      app.hub.publish = publish
      const [marker] = await sendDirect(app, sender, [jude.id], 'marker')
      t.match(await peer.next(), { type: 'message', id: marker }, 'then the next message, not the raced one again')
      await app.store.ack(jude.id, [marker])
      app.hub.publish = async b => { batch = b }
    })
  }
})

t.test('a socket whose replay cannot read the store is closed with 1013, to retry later', async t => {
  const app = await buildApp(t)
  const base = await listen(app)
  const user = await createUser(app)
  app.store.pendingRecipients = async () => { throw new Error('connection refused') }
  const peer = await Peer.ready(t, wsUrl(base, ticketFor(app, user)))
  t.equal((await peer.untilClosed()).closed.code, 1013)
})
