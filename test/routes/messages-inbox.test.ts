import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { accessTokenFor, apiTokenFor, buildApp, createUser } from '../helpers/app.js'
import { testBackends } from '../helpers/backends.js'
import type { User } from '../../schemas/users.js'

function get (app: FastifyInstance, token: string, query = '') {
  return app.inject({ method: 'GET', url: `/api/messages/inbox${query}`, headers: { authorization: `Bearer ${token}` } })
}

function ack (app: FastifyInstance, token: string, ids: string[]) {
  return app.inject({ method: 'POST', url: '/api/messages/ack', headers: { authorization: `Bearer ${token}` }, payload: { ids } })
}

/** Sends `count` numbered private messages from `from` to `to`; returns their ids, oldest first. */
async function sendNumbered (app: FastifyInstance, from: User, to: User, count: number) {
  const { token } = await apiTokenFor(app, from)
  const ids: string[] = []
  for (let i = 1; i <= count; i++) {
    const res = await app.inject({
      method: 'POST',
      url: '/api/messages/send-private',
      headers: { authorization: `Bearer ${token}` },
      payload: { recipientId: to.id, content: `message ${i}` }
    })
    ids.push(res.json().messages[0].id)
  }
  return ids
}

for (const backend of testBackends()) {
  t.test(`inbox on the ${backend.name} store`, { skip: backend.skip }, async t => {
    const app = await buildApp(t, { driver: await backend.driver(t) })

    t.test('pages through the messages oldest first with an opaque cursor', async t => {
      const sender = await createUser(app)
      const reader = await createUser(app)
      const ids = await sendNumbered(app, sender, reader, 5)
      const token = accessTokenFor(app, reader)

      const first = await get(app, token, '?limit=2')
      t.equal(first.statusCode, 200)
      t.equal(first.headers['cache-control'], 'no-store')
      const page1 = first.json()
      t.same(page1.messages.map((m: { id: string }) => m.id), ids.slice(0, 2))
      t.same(Object.keys(page1.messages[0]).sort(), ['acked', 'content', 'createdAt', 'id', 'senderId', 'templateId'])
      t.match(page1.messages[0], { senderId: sender.id, content: 'message 1', templateId: null, acked: false })
      t.type(page1.nextCursor, 'string')

      const page2 = (await get(app, token, `?limit=2&after=${page1.nextCursor}`)).json()
      t.same(page2.messages.map((m: { content: string }) => m.content), ['message 3', 'message 4'])
      const page3 = (await get(app, token, `?limit=2&after=${page2.nextCursor}`)).json()
      t.same(page3.messages.map((m: { content: string }) => m.content), ['message 5'])
      const page4 = (await get(app, token, `?after=${page3.nextCursor}`)).json()
      t.same(page4.messages, [])
      t.equal(page4.nextCursor, page3.nextCursor, 'an empty page keeps the cursor for the next poll')

      await sendNumbered(app, sender, reader, 1)
      const later = (await get(app, token, `?after=${page4.nextCursor}`)).json()
      t.same(later.messages.map((m: { content: string }) => m.content), ['message 1'], 'polling with the cursor picks up new messages')

      const all = (await get(app, (await apiTokenFor(app, reader)).token)).json()
      t.equal(all.messages.length, 6, 'an API token reads the inbox too, 100 at most by default')
    })

    t.test('a cursor from an earlier version is accepted and skips nothing', async t => {
      const sender = await createUser(app)
      const reader = await createUser(app)
      const ids = await sendNumbered(app, sender, reader, 3)
      const token = accessTokenFor(app, reader)
      const seqs = (await app.store.pendingMessages(reader.id, 0, 10)).map(m => m.seq)
      const legacy = (seq: number) => Buffer.from(`m${seq}`).toString('base64url')

      const res = await get(app, token, `?after=${legacy(seqs[0])}`)
      t.equal(res.statusCode, 200)
      const page = res.json()
      const read = page.messages.map((m: { id: string }) => m.id)
      t.ok(ids.slice(1).every(id => read.includes(id)), 'every message after it comes')
      t.not(page.nextCursor, legacy(seqs[0]), 'and a current cursor to continue with')
      t.same((await get(app, token, `?after=${page.nextCursor}`)).json().messages, [])

      const atEnd = (await get(app, token, `?after=${legacy(seqs[2])}`)).json()
      t.same(atEnd, { success: true, messages: [], nextCursor: legacy(seqs[2]) }, 'at the end it is kept')
      await sendNumbered(app, sender, reader, 1)
      t.same((await get(app, token, `?after=${legacy(seqs[2])}`)).json().messages.map((m: { content: string }) => m.content), ['message 1'])
    })

    t.test('an inbox holds only its owner\'s messages', async t => {
      const sender = await createUser(app)
      const a = await createUser(app)
      const b = await createUser(app)
      await sendNumbered(app, sender, a, 2)
      const res = await get(app, accessTokenFor(app, b))
      t.same(res.json(), { success: true, messages: [], nextCursor: null })
    })

    t.test('acknowledging marks messages read and touches only the caller\'s own', async t => {
      const sender = await createUser(app)
      const reader = await createUser(app)
      const other = await createUser(app)
      const ids = await sendNumbered(app, sender, reader, 3)
      const [othersMessage] = await sendNumbered(app, sender, other, 1)
      const token = accessTokenFor(app, reader)

      const res = await ack(app, token, [ids[0], ids[1], ids[0], othersMessage])
      t.equal(res.statusCode, 200)
      t.same(res.json(), { success: true, acked: 2 })
      t.same((await ack(app, token, [ids[0]])).json(), { success: true, acked: 0 }, 'acknowledging again changes nothing')

      const inbox = (await get(app, token)).json()
      t.same(inbox.messages.map((m: { acked: boolean }) => m.acked), [true, true, false])
      t.same(await app.store.pendingMessages(reader.id, 0, 10).then(m => m.map(x => x.id)), [ids[2]], 'acked messages are not replayed')
      t.same((await get(app, accessTokenFor(app, other))).json().messages.map((m: { acked: boolean }) => m.acked), [false])
    })
  })
}

t.test('inbox and ack refuse bad input and bad tokens', async t => {
  const app = await buildApp(t)
  const user = await createUser(app)
  const token = accessTokenFor(app, user)
  await sendNumbered(app, user, user, 1)

  for (const query of ['?after=garbage', '?after=bTEy%3D', '?after=-1', '?limit=0', '?limit=501', '?limit=ten']) {
    const res = await get(app, token, query)
    t.equal(res.statusCode, 400, query)
    t.match(res.json(), { success: false, statusCode: 400, error: String }, query)
  }
  t.equal((await get(app, token, '?limit=500')).statusCode, 200)

  for (const ids of [[], ['not-a-uuid']]) {
    const res = await ack(app, token, ids)
    t.equal(res.statusCode, 400, JSON.stringify(ids))
    t.match(res.json(), { success: false, statusCode: 400 })
  }

  for (const [name, authorization] of [
    ['no token', undefined],
    ['a ws ticket', `Bearer ${app.tokens.issueWsTicket(user.id).token}`],
    ['a garbled token', 'Bearer x']
  ]) {
    const headers = authorization ? { authorization } : {}
    const inbox = await app.inject({ method: 'GET', url: '/api/messages/inbox', headers })
    t.equal(inbox.statusCode, 401, `inbox with ${name}`)
    t.equal(inbox.json().error, 'Unauthorized: Missing or invalid token')
    const acked = await app.inject({ method: 'POST', url: '/api/messages/ack', headers, payload: { ids: [crypto.randomUUID()] } })
    t.equal(acked.statusCode, 401, `ack with ${name}`)
  }
})
