import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
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
