import t from 'tap'
import { buildApp, createUser, freshPglite } from '../helpers/app.js'
import type { RpcDriver } from '../../plugins/app/supabase/driver.js'
import { listen, Peer, refused, sendDirect, ticketFor, wsUrl } from './helpers.js'

/*
 * What opening a socket costs the store. A connect storm (every client
 * reconnecting after a deploy) is as fast as these round trips allow.
 */

/** The real embedded store, counting the SQL functions called. */
async function countingStore () {
  const driver = await freshPglite()
  const calls: string[] = []
  const counted: RpcDriver = {
    kind: driver.kind,
    sql: driver.sql,
    call: (fn, args, signal) => { calls.push(fn); return driver.call(fn, args, signal) },
    isUnavailable: error => driver.isUnavailable(error),
    close: () => driver.close()
  }
  return { driver: counted, count: (fn: string) => calls.filter(c => c === fn).length }
}

t.test('users looked up together cost one store call', async t => {
  const { driver, count } = await countingStore()
  const app = await buildApp(t, { env: { AUTH_CACHE_TTL_MS: '0' }, driver })
  const users = await Promise.all(Array.from({ length: 20 }, () => createUser(app)))
  const found = await Promise.all([...users.map(user => app.userById(user.id)), app.userById('nobody')])
  t.same(found, [...users, null], 'each lookup gets its own user, or null')
  t.equal(count('gatehouse_users_get'), 1)
  t.equal(count('gatehouse_user_get'), 0)
})

t.test('sockets with nothing pending cost no replay query; a backlog is still replayed', async t => {
  const { driver, count } = await countingStore()
  const app = await buildApp(t, { driver })
  const base = await listen(app)
  const sender = await createUser(app)
  const idle = await Promise.all(Array.from({ length: 10 }, () => createUser(app)))
  const peers = await Promise.all(idle.map(user => Peer.ready(t, wsUrl(base, ticketFor(app, user)))))
  t.equal(count('gatehouse_pending'), 0, 'no page of messages was read for them')
  t.ok(count('gatehouse_pending_recipients') >= 1, 'they were asked about')

  const reader = await createUser(app)
  const [waiting] = await sendDirect(app, sender, [reader.id], 'waiting')
  const peer = await Peer.ready(t, wsUrl(base, ticketFor(app, reader)))
  t.match(await peer.next(), { type: 'message', id: waiting, content: 'waiting' })
  t.equal(count('gatehouse_pending'), 1, 'one page for the one socket with a backlog')

  const [live] = await sendDirect(app, sender, [idle[3].id], 'live')
  t.match(await peers[3].next(), { type: 'message', id: live }, 'and the others are live')
})

t.test('a reconnect within the cache lifetime needs no user lookup; a removed user is refused at once', async t => {
  const { driver, count } = await countingStore()
  const app = await buildApp(t, { env: { AUTH_CACHE_TTL_MS: '600000' }, driver })
  const base = await listen(app)
  const user = await createUser(app)
  const first = await Peer.ready(t, wsUrl(base, ticketFor(app, user)))
  first.ws.close()
  await first.closed
  await Peer.ready(t, wsUrl(base, ticketFor(app, user)))
  t.equal(count('gatehouse_users_get'), 1, 'the second socket was let in from the cache')

  await app.store.deleteUser({ id: user.id })
  t.equal((await refused(wsUrl(base, ticketFor(app, user)))).statusCode, 401)
})
