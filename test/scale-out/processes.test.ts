import { randomBytes, randomUUID } from 'node:crypto'
import t from 'tap'
import { Webhook } from 'svix'
import type { User } from '../../schemas/users.js'
import { WsClose } from '../../schemas/ws.js'
import { accessTokenFor, apiTokenFor, buildApp, createUser } from '../helpers/app.js'
import { freshDatabase, requireDatabaseUrl } from '../helpers/backends.js'
import { buildDist, eventually, privateRedis, startGatehouse, type Gatehouse } from '../helpers/processes.js'
import { migrate } from '../../plugins/app/supabase/migrate.js'
import { createPostgresDriver } from '../../plugins/app/supabase/drivers/postgres.js'
import { Peer, refused, wsUrl } from '../ws/helpers.js'

/*
 * Two real gatehouse processes (`node dist/server.js`, production settings) on one
 * Postgres database and one redis-server of this test, driven over loopback as a
 * load balancer without stickiness would: any request may land on either.
 */

const WEBHOOK_SECRET = `whsec_${randomBytes(24).toString('base64')}`
/** Every token this file sees; none may appear in any process's logs. */
const issued: string[] = []
const remember = (token: string) => { issued.push(token); return token }

t.test('two gatehouse processes on one Postgres and one Redis', async t => {
  const dist = await buildDist(t)
  const database = await freshDatabase(t, requireDatabaseUrl())
  const migrator = createPostgresDriver(database, { timeoutMs: 10_000, max: 1 })
  await migrate(migrator.sql)
  await migrator.close()

  const redis = await privateRedis(t)
  const env = {
    DATABASE_URL: database,
    REDIS_URL: redis.url,
    REDIS_KEY_PREFIX: `gatehouse-test-${randomBytes(4).toString('hex')}:`,
    REDIS_TIMEOUT_MS: '500',
    CLERK_WEBHOOK_SECRET: WEBHOOK_SECRET,
    RATE_LIMIT_MAX: '100000',
    SHUTDOWN_GRACE_MS: '3000'
  }
  // Seeds users and signs tokens with the processes' secret; its own hub is not involved.
  const seeder = await buildApp(t, { store: { kind: 'postgres', url: database } })
  const [a, b] = await Promise.all([startGatehouse(t, dist, env), startGatehouse(t, dist, env)])
  const processes: Gatehouse[] = [a, b]

  async function call (base: string, method: string, path: string, token?: string, body?: unknown) {
    const res = await fetch(base + path, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' })
      },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
    const text = await res.text()
    return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null }
  }

  async function ticket (base: string, user: User): Promise<string> {
    const res = await call(base, 'GET', '/websocket-token/', remember(accessTokenFor(seeder, user)))
    if (res.status !== 200) throw new Error(`ticket refused with ${res.status}`)
    return remember(res.body.token)
  }

  async function apiToken (user: User) {
    const token = await apiTokenFor(seeder, user)
    remember(token.token)
    return token
  }

  async function sendPrivate (base: string, token: string, recipientId: string, content: string) {
    return await call(base, 'POST', '/api/messages/send-private', token, { recipientId, content })
  }

  function clerkDelivery (base: string, event: unknown) {
    const payload = JSON.stringify(event)
    const id = `msg_${randomUUID()}`
    const at = new Date()
    return fetch(base + '/api/webhooks/clerk', {
      method: 'POST',
      body: payload,
      headers: {
        'content-type': 'application/json',
        'svix-id': id,
        'svix-timestamp': String(Math.floor(at.getTime() / 1000)),
        'svix-signature': new Webhook(WEBHOOK_SECRET).sign(id, at, payload)
      }
    })
  }

  t.test('a message sent through one process reaches the recipient\'s sockets on every process', async t => {
    const [sender, recipient] = [await createUser(seeder), await createUser(seeder)]
    const { token } = await apiToken(sender)
    const onA = await Peer.ready(t, wsUrl(a.url, await ticket(a.url, recipient)))
    const onB = await Peer.ready(t, wsUrl(b.url, await ticket(b.url, recipient)))

    const res = await sendPrivate(a.url, token, recipient.id, 'to every socket')
    t.equal(res.status, 200)
    const [{ id }] = res.body.messages
    t.match(await onB.next(), { type: 'message', id, senderId: sender.id, content: 'to every socket' }, 'the other process delivers it')
    t.match(await onA.next(), { type: 'message', id }, 'the accepting process delivers it')

    const back = await sendPrivate(b.url, token, recipient.id, 'and back')
    t.match(await onA.next(), { type: 'message', id: back.body.messages[0].id, content: 'and back' })
    t.match(await onB.next(), { type: 'message', id: back.body.messages[0].id })
  })

  t.test('a ws ticket opens one socket across all processes', async t => {
    const user = await createUser(seeder)
    const one = await ticket(a.url, user)
    await Peer.ready(t, wsUrl(b.url, one))
    const again = await refused(wsUrl(a.url, one))
    t.equal(again.statusCode, 401, 'the process that issued it refuses it once used elsewhere')
    t.equal(again.body.message, 'Token already used')
    t.equal((await refused(wsUrl(b.url, one))).statusCode, 401, 'and so does the one that took it')

    // Shown to both processes at once, exactly one upgrade succeeds.
    const raced = await ticket(b.url, user)
    const outcomes = await Promise.allSettled([Peer.open(t, wsUrl(a.url, raced)), Peer.open(t, wsUrl(b.url, raced))])
    t.equal(outcomes.filter(o => o.status === 'fulfilled').length, 1)
  })

  t.test('rate-limit counters are shared by the processes', async t => {
    const user = await createUser(seeder)
    const token = remember(accessTokenFor(seeder, user))
    const remaining = async (base: string) => Number((await call(base, 'GET', '/websocket-token/', token)).headers.get('x-ratelimit-remaining'))
    const first = await remaining(a.url)
    t.equal(await remaining(b.url), first - 1, 'a request on B counts against the budget A used')
    t.equal(await remaining(a.url), first - 2)
  })

  t.test('revocation, demotion and user deletion take effect on every process', async t => {
    const admin = await createUser(seeder, { role: 'admin', clerk_id: `clerk_admin_${randomUUID()}` })
    const victim = await createUser(seeder, { clerk_id: `clerk_victim_${randomUUID()}` })
    const adminToken = (await apiToken(admin)).token
    const victimToken = await apiToken(victim)

    t.equal((await sendPrivate(b.url, victimToken.token, admin.id, 'before')).status, 200)
    const introspect = async () => (await call(b.url, 'POST', '/api/tokens/introspect', adminToken, { token: victimToken.token })).body
    t.equal((await introspect()).active, true, 'active, as the other process sees it')
    t.equal((await call(a.url, 'DELETE', `/api/admin/tokens/${victimToken.id}`, adminToken)).status, 200)
    t.same(await introspect(), { active: false, reason: 'revoked' }, "the other process's introspection sees the revocation from the next call")
    const refusedSend = await sendPrivate(b.url, victimToken.token, admin.id, 'after')
    t.equal(refusedSend.status, 401, 'the other process refuses the revoked token from the next request')
    t.equal(refusedSend.body.error, 'Unauthorized: Missing or invalid token')

    // Removed by Clerk through A: the socket on B closes with 4003.
    const socket = await Peer.ready(t, wsUrl(b.url, await ticket(b.url, victim)))
    const began = Date.now()
    const deleted = await clerkDelivery(a.url, { object: 'event', type: 'user.deleted', data: { id: victim.clerkId, object: 'user', deleted: true } })
    t.equal(deleted.status, 200)
    const { closed } = await socket.untilClosed()
    t.equal(closed.code, WsClose.REVOKED)
    t.comment(`socket on the other process closed ${Date.now() - began} ms after the webhook was sent`)
    const reconnect = await call(b.url, 'GET', '/websocket-token/', remember(accessTokenFor(seeder, victim)))
    t.equal(reconnect.status, 401, 'and the removed user gets no new ticket anywhere')

    // Demoted through A: B refuses the admin routes from the next request.
    t.equal((await call(b.url, 'GET', '/api/admin/tokens', adminToken)).status, 200)
    const demoted = await clerkDelivery(a.url, {
      object: 'event',
      type: 'user.updated',
      data: { id: admin.clerkId, object: 'user', email_addresses: [], public_metadata: { role: 'user', organization_id: 'org_1' } }
    })
    t.equal(demoted.status, 200)
    t.equal((await call(b.url, 'GET', '/api/admin/tokens', adminToken)).status, 403)
  })

  t.test('/ready reports Redis on every process', async t => {
    for (const p of processes) {
      const res = await call(p.url, 'GET', '/ready')
      t.equal(res.status, 200)
      t.same(res.body, { status: 'ready', checks: { store: 'ok', redis: 'ok' } })
    }
  })

  t.test('Redis killed and restarted mid-stream: nothing accepted is lost, live delivery resumes without a restart', async t => {
    const [sender, recipient] = [await createUser(seeder), await createUser(seeder)]
    const { token } = await apiToken(sender)
    const socket = await Peer.ready(t, wsUrl(b.url, await ticket(b.url, recipient)))
    const accepted: string[] = []
    const sendOne = async (n: number) => {
      const res = await sendPrivate(a.url, token, recipient.id, `message ${n}`)
      t.equal(res.status, 200, `send ${n} accepted`)
      accepted.push(res.body.messages[0].id)
    }

    for (let n = 0; n < 10; n++) await sendOne(n)
    await redis.kill()
    for (let n = 10; n < 20; n++) await sendOne(n)

    const ready = await call(a.url, 'GET', '/ready')
    t.equal(ready.status, 503, '/ready says the process is not fit while Redis is down')
    t.equal(ready.body.code, 'SERVICE_UNAVAILABLE')
    const ticketDuringOutage = remember((await call(a.url, 'GET', '/websocket-token/', remember(accessTokenFor(seeder, recipient)))).body.token)
    const refusedTicket = await refused(wsUrl(b.url, ticketDuringOutage))
    t.equal(refusedTicket.statusCode, 503, 'tickets fail closed: refused while their single use cannot be checked')

    await redis.start()
    for (const p of processes) await eventually('ready again', async () => (await call(p.url, 'GET', '/ready')).status === 200)
    for (let n = 20; n < 30; n++) await sendOne(n)

    const received = (await socket.messages(accepted.length)).map(m => m.id)
    t.same([...received].sort(), [...accepted].sort(), 'every accepted message reached the socket that stayed open, once')
    t.same(received.slice(-10), accepted.slice(-10), 'messages sent after Redis returned arrive live, in order')
    t.equal(socket.ws.readyState, socket.ws.OPEN, 'the socket was never closed')

    // The same ticket is still usable once Redis is back: refusing it did not consume it.
    await Peer.ready(t, wsUrl(a.url, ticketDuringOutage))
  })

  t.test('a user removed while Redis is down loses their sockets on every process once it returns; others keep theirs', async t => {
    const victim = await createUser(seeder, { clerk_id: `clerk_gone_${randomUUID()}` })
    const [survivor, sender] = [await createUser(seeder), await createUser(seeder)]
    const { token } = await apiToken(sender)
    const victimOnA = await Peer.ready(t, wsUrl(a.url, await ticket(a.url, victim)))
    const victimOnB = await Peer.ready(t, wsUrl(b.url, await ticket(b.url, victim)))
    const survivorOnB = await Peer.ready(t, wsUrl(b.url, await ticket(b.url, survivor)))

    await redis.kill()
    const deleted = await clerkDelivery(a.url, { object: 'event', type: 'user.deleted', data: { id: victim.clerkId, object: 'user', deleted: true } })
    t.equal(deleted.status, 200, 'the removal is stored while Redis is down')
    // The close could not travel: without a re-check on reconnection these sockets would stay open for good.
    await new Promise(resolve => setTimeout(resolve, 300))
    t.equal(victimOnB.ws.readyState, victimOnB.ws.OPEN, 'the notice was lost with Redis')

    await redis.start()
    for (const [name, socket] of [['accepting process', victimOnA], ['other process', victimOnB]] as const) {
      const { closed } = await socket.untilClosed()
      t.same(closed, { code: WsClose.REVOKED, reason: 'user removed' }, `closed with 4003 on the ${name}`)
    }
    for (const p of processes) await eventually('ready again', async () => (await call(p.url, 'GET', '/ready')).status === 200)
    t.equal(survivorOnB.ws.readyState, survivorOnB.ws.OPEN, 'a user still present keeps the socket')
    const res = await sendPrivate(a.url, token, survivor.id, 'still here')
    t.match(await survivorOnB.next(), { type: 'message', id: res.body.messages[0].id }, 'and still receives')
  })

  t.test('SIGTERM of one process: its sockets get 1001, reconnect to the other, nothing is lost', async t => {
    const [sender, recipient] = [await createUser(seeder), await createUser(seeder)]
    const { token } = await apiToken(sender)
    const onA = await Peer.ready(t, wsUrl(a.url, await ticket(a.url, recipient)))
    const first = await sendPrivate(b.url, token, recipient.id, 'before shutdown')
    t.match(await onA.next(), { type: 'message', id: first.body.messages[0].id })

    a.signal('SIGTERM')
    const { closed } = await onA.untilClosed()
    t.equal(closed.code, WsClose.GOING_AWAY)
    const during = await sendPrivate(b.url, token, recipient.id, 'while reconnecting')
    t.equal(during.status, 200)
    t.equal(await a.exited, 0, 'the drained process exits cleanly')

    const onB = await Peer.ready(t, wsUrl(b.url, await ticket(b.url, recipient)))
    const replayed = await onB.messages(2)
    t.same(replayed.map(m => m.id), [first.body.messages[0].id, during.body.messages[0].id], 'unacknowledged messages replay on the other process')
  })

  t.test('no process logged a token', async t => {
    const logs = processes.flatMap(p => p.output).join('\n')
    t.ok(logs.length > 0)
    t.ok(issued.length > 0)
    for (const token of issued) t.notOk(logs.includes(token), 'token absent from the logs')
    t.notMatch(logs, /eyJ[A-Za-z0-9_-]{10,}\.eyJ/, 'nothing shaped like a JWT either')
  })
})
