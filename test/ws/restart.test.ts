import t from 'tap'
import { apiTokenFor, buildApp, createUser } from '../helpers/app.js'
import { listen, Peer, ticketFor, wsUrl } from './helpers.js'

t.test('a message accepted while its recipient is offline survives a restart of the embedded store', async t => {
  const dataDir = t.testdir()
  const store = { kind: 'pglite' as const, dataDir }
  // Creating an embedded database on disk takes longer than Fastify's default plugin timeout on a busy machine.
  const server = { pluginTimeout: 120_000 }

  const before = await buildApp(t, { store, server })
  const [sender, recipient] = [await createUser(before), await createUser(before)]
  const { token } = await apiTokenFor(before, sender)
  const res = await before.inject({
    method: 'POST',
    url: '/api/messages/send-bulk',
    headers: { authorization: `Bearer ${token}` },
    payload: { recipientIds: [recipient.id], content: 'kept on disk' }
  })
  t.equal(res.statusCode, 200)
  const [{ id }] = (res.json() as { messages: Array<{ id: string }> }).messages
  await before.close()

  const after = await buildApp(t, { store, server })
  const base = await listen(after)
  const peer = await Peer.ready(t, wsUrl(base, ticketFor(after, recipient)))
  t.match(await peer.next(), { type: 'message', id, senderId: sender.id, content: 'kept on disk' })
})
