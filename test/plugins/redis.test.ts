import { randomBytes } from 'node:crypto'
import t from 'tap'
import { Redis } from 'ioredis'
import { apiTokenFor, buildApp, createUser, testConfig } from '../helpers/app.js'
import { freshDatabase, requireDatabaseUrl } from '../helpers/backends.js'
import { eventually, privateRedis } from '../helpers/processes.js'
import { createPostgresDriver } from '../../plugins/app/supabase/drivers/postgres.js'
import { migrate } from '../../plugins/app/supabase/migrate.js'
import { listen, Peer, refused, sendDirect, ticketFor, wsUrl } from '../ws/helpers.js'

/*
 * Two applications in this process, as two processes would be: one Postgres
 * database, one Redis, nothing else shared. (test/scale-out/ runs real processes.)
 */

async function database (t: Parameters<typeof freshDatabase>[0]) {
  const url = await freshDatabase(t, requireDatabaseUrl())
  const driver = createPostgresDriver(url, { timeoutMs: 10_000, max: 1 })
  await migrate(driver.sql)
  await driver.close()
  return url
}

const prefix = () => `gatehouse-test-${randomBytes(4).toString('hex')}:`

t.test('two apps on the shared Redis behave as one service', async t => {
  const url = await database(t)
  const env = { REDIS_URL: process.env.REDIS_URL_TEST ?? 'redis://127.0.0.1:6379', REDIS_KEY_PREFIX: prefix() }
  const store = { kind: 'postgres' as const, url }
  const [one, two] = [await buildApp(t, { config: testConfig(env, store) }), await buildApp(t, { config: testConfig(env, store) })]
  const [baseOne, baseTwo] = [await listen(one), await listen(two)]
  const [sender, recipient] = [await createUser(one), await createUser(one)]

  t.test('a send published by one is delivered by the other', async t => {
    const peer = await Peer.ready(t, wsUrl(baseTwo, ticketFor(one, recipient)))
    const [id] = await sendDirect(one, sender, [recipient.id], 'across')
    t.match(await peer.next(), { type: 'message', id, content: 'across' })

    // Something on the channel that is not a hub event changes nothing.
    const other = new Redis(env.REDIS_URL)
    t.after(() => other.quit())
    await other.publish(`${env.REDIS_KEY_PREFIX}hub`, 'not json')
    await other.publish('some-other-channel', '{}')
    const [next] = await sendDirect(two, sender, [recipient.id], 'still fine')
    t.match(await peer.next(), { type: 'message', id: next })
  })

  t.test('a ticket is consumed for both', async t => {
    const ticket = ticketFor(two, recipient)
    await Peer.ready(t, wsUrl(baseOne, ticket))
    t.equal((await refused(wsUrl(baseTwo, ticket))).statusCode, 401)
  })

  t.test('a user closed by one loses its sockets on the other', async t => {
    const peer = await Peer.ready(t, wsUrl(baseOne, ticketFor(one, recipient)))
    await two.hub.disconnectUser(recipient.id, 4003, 'user removed')
    t.equal((await peer.untilClosed()).closed.code, 4003)
  })

  t.test('a user removed through one is refused a socket by the other, though that one just let them in', async t => {
    const leaving = await createUser(one)
    await Peer.ready(t, wsUrl(baseTwo, ticketFor(two, leaving)))
    await one.store.deleteUser({ id: leaving.id })
    // The invalidation travels through Redis: the other process forgets the user within moments.
    await eventually('the other process refuses the removed user', async () => (await refused(wsUrl(baseTwo, ticketFor(two, leaving)))).statusCode === 401, 5000)
    t.equal((await refused(wsUrl(baseTwo, ticketFor(two, leaving)))).statusCode, 401)
  })

  t.test('a token\'s sends a minute are counted in Redis under rate:token-sends:<token id>', async t => {
    const id = crypto.randomUUID()
    await one.store.createApiToken({ id, userId: sender.id, createdBy: null, name: null, expiresAt: null, sendsPerMinute: 5 })
    const token = one.tokens.issueApi(id, sender.id, null)
    for (const app of [one, two]) {
      const res = await app.inject({
        method: 'POST',
        url: '/api/messages/send-private',
        headers: { authorization: `Bearer ${token}` },
        payload: { recipientId: recipient.id, content: 'counted' }
      })
      t.equal(res.statusCode, 200, res.body)
    }
    const reader = new Redis(env.REDIS_URL)
    t.after(() => reader.quit())
    const key = `${env.REDIS_KEY_PREFIX}rate:token-sends:${id}`
    t.equal(await reader.get(key), '2', 'one count for both apps, under the token\'s own name')
    const ttl = await reader.pttl(key)
    t.ok(ttl > 0 && ttl <= 60_000, 'for the minute')
    const keys = await reader.keys(`${env.REDIS_KEY_PREFIX}rate:*`)
    t.same(keys.filter(k => k.includes('undefined')), [], 'no key named after a missing route')
  })

  t.test('/ready names both dependencies', async t => {
    const res = await one.inject('/ready')
    t.same(res.json(), { status: 'ready', checks: { store: 'ok', redis: 'ok' } })
  })
})

t.test('while Redis is down: sends are stored, tickets refused, rate limits open; it recovers by itself', async t => {
  const redis = await privateRedis(t)
  const url = await database(t)
  const env = { REDIS_URL: redis.url, REDIS_KEY_PREFIX: prefix(), REDIS_TIMEOUT_MS: '300', RATE_LIMIT_MAX: '3' }
  const app = await buildApp(t, { config: testConfig(env, { kind: 'postgres', url }) })
  const base = await listen(app)
  const [sender, recipient] = [await createUser(app), await createUser(app)]
  const { token } = await apiTokenFor(app, sender)
  const peer = await Peer.ready(t, wsUrl(base, ticketFor(app, recipient)))
  const [before] = await sendDirect(app, sender, [recipient.id], 'before')
  t.match(await peer.next(), { id: before })

  await redis.kill()
  await eventually('the outage is seen', async () => app.redis?.commands.status !== 'ready')

  const sent = await app.inject({
    method: 'POST',
    url: '/api/messages/send-private',
    headers: { authorization: `Bearer ${token}` },
    payload: { recipientId: recipient.id, content: 'during' }
  })
  t.equal(sent.statusCode, 200, 'the send is accepted and stored')
  const statuses = []
  for (let i = 0; i < 5; i++) statuses.push((await app.inject('/health/nope')).statusCode)
  t.same(statuses, [404, 404, 404, 404, 404], 'over the limit of 3 and never 429: the limit fails open')
  const ready = await app.inject('/ready')
  t.equal(ready.statusCode, 503)
  t.match(ready.json(), { code: 'SERVICE_UNAVAILABLE', message: 'Redis is unavailable, try again later' })
  const ticket = await refused(wsUrl(base, ticketFor(app, recipient)))
  t.equal(ticket.statusCode, 503, 'a ticket is refused, not accepted unchecked')

  await redis.start()
  t.match(await peer.next(), { type: 'message', id: sent.json().messages[0].id, content: 'during' }, 'the open socket catches up')
  await eventually('ready', async () => (await app.inject('/ready')).statusCode === 200)
  const [after] = await sendDirect(app, sender, [recipient.id], 'after')
  t.match(await peer.next(), { id: after }, 'live again')
  t.same((await app.inject('/health/nope')).statusCode, 404)
})

t.test('without REDIS_URL everything stays in the process', async t => {
  const app = await buildApp(t)
  t.equal(app.redis, null)
  t.same((await app.inject('/ready')).json(), { status: 'ready', checks: { store: 'ok' } })
})

t.test('a process started while Redis is down becomes ready once it is up, without a restart', async t => {
  const redis = await privateRedis(t)
  await redis.kill()
  const app = await buildApp(t, { config: testConfig({ REDIS_URL: redis.url, REDIS_KEY_PREFIX: prefix(), REDIS_TIMEOUT_MS: '300' }, { kind: 'postgres', url: await database(t) }) })
  t.equal((await app.inject('/ready')).statusCode, 503)
  await redis.start()
  await eventually('ready', async () => (await app.inject('/ready')).statusCode === 200)
  const [sender, recipient] = [await createUser(app), await createUser(app)]
  const peer = await Peer.ready(t, wsUrl(await listen(app), ticketFor(app, recipient)))
  const [id] = await sendDirect(app, sender, [recipient.id], 'hello')
  t.match(await peer.next(), { id }, 'live delivery works')
})
