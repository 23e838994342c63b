import { randomBytes, randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { Webhook } from 'svix'
import { accessTokenFor, apiTokenFor, buildApp } from '../helpers/app.js'
import { testBackends } from '../helpers/backends.js'

const SECRET = `whsec_${randomBytes(24).toString('base64')}`
const URL = '/api/webhooks/clerk'

/** A delivery as Clerk sends it: the JSON body and svix headers signed with `secret`. */
function delivery (body: unknown, options: { secret?: string, at?: Date, raw?: string, id?: string } = {}) {
  const payload = options.raw ?? JSON.stringify(body)
  const id = options.id ?? `msg_${randomUUID()}`
  const at = options.at ?? new Date()
  return {
    method: 'POST' as const,
    url: URL,
    payload,
    headers: {
      'content-type': 'application/json',
      'svix-id': id,
      'svix-timestamp': String(Math.floor(at.getTime() / 1000)),
      'svix-signature': new Webhook(options.secret ?? SECRET).sign(id, at, payload)
    }
  }
}

/** A `user.*` event in the shape Clerk documents (UserJSON, trimmed to what matters here plus some noise). */
function userEvent (type: string, clerkId: string, overrides: Record<string, unknown> = {}) {
  return {
    object: 'event',
    type,
    timestamp: Date.now(),
    instance_id: 'ins_test',
    event_attributes: { http_request: { client_ip: '127.0.0.1', user_agent: 'test' } },
    data: {
      id: clerkId,
      object: 'user',
      username: 'ada',
      first_name: 'Ada',
      last_name: 'Lovelace',
      image_url: 'https://img.clerk.com/x',
      primary_email_address_id: 'idn_2',
      email_addresses: [
        { id: 'idn_1', object: 'email_address', email_address: 'old@example.com', verification: { status: 'verified', strategy: 'email_code' }, linked_to: [] },
        { id: 'idn_2', object: 'email_address', email_address: 'ada@example.com', verification: { status: 'verified', strategy: 'email_code' }, linked_to: [] }
      ],
      public_metadata: {},
      private_metadata: { internal: true },
      unsafe_metadata: { role: 'admin' },
      created_at: 1715600000000,
      updated_at: 1715600000000,
      ...overrides
    }
  }
}

const deletedEvent = (clerkId: string) => ({ object: 'event', type: 'user.deleted', data: { id: clerkId, object: 'user', deleted: true } })

async function app (t: Parameters<typeof buildApp>[0], env: Record<string, string> = { CLERK_WEBHOOK_SECRET: SECRET }) {
  return await buildApp(t, { env })
}

/** Records the sockets the route asks the hub to close. */
function spyOnDisconnect (server: FastifyInstance) {
  const calls: Array<[string, number, string]> = []
  server.hub.disconnectUser = async (userId, code, reason) => { calls.push([userId, code, reason]) }
  return calls
}

t.test('user.created creates the user from the Clerk payload', async t => {
  const server = await app(t)
  const res = await server.inject(delivery(userEvent('user.created', 'user_created_1')))
  t.equal(res.statusCode, 200)
  t.same(res.json(), { success: true })

  const user = await server.store.getUserByClerkId('user_created_1')
  t.match(user, {
    clerkId: 'user_created_1',
    email: 'ada@example.com',
    name: 'Ada Lovelace',
    role: 'user',
    planType: 'free',
    credits: 0
  }, 'primary email, full name, and role not taken from unsafe_metadata')
})

t.test('user.created takes role, organization, plan and credits from public_metadata', async t => {
  const server = await app(t)
  const res = await server.inject(delivery(userEvent('user.created', 'user_meta_1', {
    first_name: null,
    last_name: null,
    username: 'grace',
    public_metadata: { role: 'admin', organization_id: 'org_9', plan_type: 'pro', credits: 250 }
  })))
  t.equal(res.statusCode, 200)
  t.match(await server.store.getUserByClerkId('user_meta_1'), {
    name: 'grace', role: 'admin', organizationId: 'org_9', planType: 'pro', credits: 250
  })

  await server.inject(delivery(userEvent('user.updated', 'user_meta_1', {
    public_metadata: { role: 'admin', organizationId: 'org_10', planType: 'team', credits: '75' }
  })))
  t.match(await server.store.getUserByClerkId('user_meta_1'), { organizationId: 'org_10', planType: 'team', credits: 75 }, 'camelCase keys and numeric strings')

  await server.inject(delivery(userEvent('user.updated', 'user_meta_1', { public_metadata: { role: 'admin', credits: -1, plan_type: '' } })))
  t.match(await server.store.getUserByClerkId('user_meta_1'), { organizationId: 'org_10', planType: 'team', credits: 75 }, 'absent or invalid values keep what is stored')
})

t.test('an unknown role in public_metadata gives an ordinary user', async t => {
  const server = await app(t)
  await server.inject(delivery(userEvent('user.created', 'user_role_1', { public_metadata: { role: 'superuser' } })))
  t.equal((await server.store.getUserByClerkId('user_role_1'))?.role, 'user')
})

t.test('user.updated promotes the user to admin and changes their details', async t => {
  const server = await app(t)
  await server.inject(delivery(userEvent('user.created', 'user_promote_1')))
  const before = await server.store.getUserByClerkId('user_promote_1')
  if (!before) throw new Error('user not created')
  const adminRoute = { method: 'GET' as const, url: '/api/admin/tokens', headers: { authorization: `Bearer ${accessTokenFor(server, before)}` } }
  t.equal((await server.inject(adminRoute)).statusCode, 403, 'not an admin yet')

  const res = await server.inject(delivery(userEvent('user.updated', 'user_promote_1', {
    first_name: 'Augusta',
    public_metadata: { role: 'admin' }
  })))
  t.equal(res.statusCode, 200)
  const after = await server.store.getUserByClerkId('user_promote_1')
  t.equal(after?.id, before.id, 'the same user row')
  t.equal(after?.role, 'admin')
  t.equal(after?.name, 'Augusta Lovelace')
  t.equal((await server.inject(adminRoute)).statusCode, 200, 'the same access token now passes the admin check')

  await server.inject(delivery(userEvent('user.updated', 'user_promote_1', { public_metadata: {} })))
  t.equal((await server.store.getUserByClerkId('user_promote_1'))?.role, 'user', 'removing the role demotes')
})

t.test('user.updated for a user not seen before creates them', async t => {
  const server = await app(t)
  const res = await server.inject(delivery(userEvent('user.updated', 'user_late_1')))
  t.equal(res.statusCode, 200)
  t.ok(await server.store.getUserByClerkId('user_late_1'))
})

t.test('user.deleted removes the user, their API tokens and their sockets', async t => {
  const server = await app(t)
  const closed = spyOnDisconnect(server)
  await server.inject(delivery(userEvent('user.created', 'user_gone_1', { public_metadata: { role: 'admin' } })))
  const user = await server.store.getUserByClerkId('user_gone_1')
  if (!user) throw new Error('user not created')
  const { id: tokenId, token } = await apiTokenFor(server, user)
  const adminRoute = { method: 'GET' as const, url: '/api/admin/tokens', headers: { authorization: `Bearer ${token}` } }
  t.equal((await server.inject(adminRoute)).statusCode, 200, 'the API token works before')

  const res = await server.inject(delivery(deletedEvent('user_gone_1')))
  t.equal(res.statusCode, 200)
  t.same(res.json(), { success: true })
  t.equal(await server.store.getUserByClerkId('user_gone_1'), null)
  t.equal(await server.store.authenticateApiToken(tokenId), null, 'the token record is gone')
  const refused = await server.inject(adminRoute)
  t.equal(refused.statusCode, 401, 'the API token is refused at once')
  t.match(refused.json(), { success: false, code: 'UNAUTHORIZED' })
  t.same(closed, [[user.id, 4003, 'user removed']])

  const again = await server.inject(delivery(deletedEvent('user_gone_1')))
  t.equal(again.statusCode, 200, 'a redelivery is acknowledged')
  t.equal(closed.length, 1)
})

t.test('a deletion is acknowledged even when closing the sockets fails', async t => {
  const server = await app(t)
  server.hub.disconnectUser = async () => { throw new Error('fan-out unavailable') }
  await server.inject(delivery(userEvent('user.created', 'user_gone_2')))
  const res = await server.inject(delivery(deletedEvent('user_gone_2')))
  t.equal(res.statusCode, 200)
  t.equal(await server.store.getUserByClerkId('user_gone_2'), null)
})

t.test('a bad signature is refused and changes nothing', async t => {
  const server = await app(t)
  const forged = delivery(userEvent('user.created', 'user_forged_1'), { secret: `whsec_${randomBytes(24).toString('base64')}` })
  const res = await server.inject(forged)
  t.equal(res.statusCode, 401)
  t.match(res.json(), { success: false, statusCode: 401, code: 'UNAUTHORIZED', message: /signature/ })
  t.equal(await server.store.getUserByClerkId('user_forged_1'), null)

  const signed = delivery(userEvent('user.created', 'user_forged_1'))
  const tampered = await server.inject({ ...signed, payload: signed.payload.replace('"public_metadata":{}', '"public_metadata":{"role":"admin"}') })
  t.equal(tampered.statusCode, 401, 'a body changed after signing')
  t.equal(await server.store.getUserByClerkId('user_forged_1'), null)
})

t.test('a stale timestamp is refused', async t => {
  const server = await app(t)
  const res = await server.inject(delivery(userEvent('user.created', 'user_stale_1'), { at: new Date(Date.now() - 10 * 60_000) }))
  t.equal(res.statusCode, 401)
  t.match(res.json().message, /too old/)
  t.equal(await server.store.getUserByClerkId('user_stale_1'), null)
})

t.test('missing svix headers are refused', async t => {
  const server = await app(t)
  const signed = delivery(userEvent('user.created', 'user_headers_1'))
  for (const header of ['svix-id', 'svix-timestamp', 'svix-signature']) {
    const headers: Record<string, string> = { ...signed.headers }
    delete headers[header]
    const res = await server.inject({ ...signed, headers })
    t.equal(res.statusCode, 401, `without ${header}`)
    t.equal(res.json().code, 'UNAUTHORIZED')
  }
  t.equal(await server.store.getUserByClerkId('user_headers_1'), null)
})

t.test('event types gatehouse does not handle are acknowledged and ignored', async t => {
  const server = await app(t)
  const res = await server.inject(delivery({ object: 'event', type: 'session.created', data: { id: 'sess_1', user_id: 'user_x' } }))
  t.equal(res.statusCode, 200)
  t.same(res.json(), { success: true, ignored: true })
})

t.test('a signed body that is not JSON is a 400', async t => {
  const server = await app(t)
  const res = await server.inject(delivery(null, { raw: '{"type": "user.created", ' }))
  t.equal(res.statusCode, 400)
  t.match(res.json(), { success: false, statusCode: 400, code: 'INVALID_JSON' })
})

t.test('a signed event missing what gatehouse needs is a 400 naming it', async t => {
  const server = await app(t)
  const noType = await server.inject(delivery({ object: 'event', data: {} }))
  t.equal(noType.statusCode, 400)
  t.match(noType.json(), { code: 'BAD_REQUEST', details: { path: '/type' } })

  const noId = await server.inject(delivery({ object: 'event', type: 'user.created', data: { first_name: 'x' } }))
  t.equal(noId.statusCode, 400)
  t.match(noId.json(), { details: { path: '/id' } })

  const empty = await server.inject(delivery(null, { raw: '' }))
  t.equal(empty.statusCode, 400)
})

t.test('without CLERK_WEBHOOK_SECRET the endpoint answers 503 and says why', async t => {
  const server = await app(t, {})
  const res = await server.inject(delivery(userEvent('user.created', 'user_nosecret_1')))
  t.equal(res.statusCode, 503)
  t.match(res.json(), { success: false, statusCode: 503, message: /CLERK_WEBHOOK_SECRET/ })
  t.equal(await server.store.getUserByClerkId('user_nosecret_1'), null)
})

t.test('a signing secret too short to be safe is refused like a missing one', async t => {
  const server = await app(t, { CLERK_WEBHOOK_SECRET: 'whsec_' + randomBytes(4).toString('base64') })
  const res = await server.inject(delivery(userEvent('user.created', 'user_weak_1')))
  t.equal(res.statusCode, 503)
  t.match(res.json().message, /not a valid signing secret/)
})

for (const backend of testBackends()) {
  t.test(`deliveries on ${backend.name} cannot be replayed or reordered`, { skip: backend.skip }, async t => {
    const { driver, sql } = await backend.open(t)
    const server = await buildApp(t, { env: { CLERK_WEBHOOK_SECRET: SECRET }, driver })
    const clerkId = `user_replay_${backend.name}`
    const role = async () => (await server.store.getUserByClerkId(clerkId))?.role

    t.test('a replayed delivery is acknowledged and not applied again', async t => {
      const promote = delivery(userEvent('user.created', clerkId, { public_metadata: { role: 'admin' }, updated_at: 1715600000000 }))
      t.same((await server.inject(promote)).json(), { success: true })
      t.equal(await role(), 'admin')
      const demote = delivery(userEvent('user.updated', clerkId, { public_metadata: {}, updated_at: 1715600001000 }))
      t.same((await server.inject(demote)).json(), { success: true })
      t.equal(await role(), 'user')

      const replayed = await server.inject(promote)
      t.equal(replayed.statusCode, 200, 'the captured delivery, sent again within its window')
      t.same(replayed.json(), { success: true, ignored: true })
      t.equal(await role(), 'user', 'the demoted user stays demoted')

      // The same svix id with another body (svix retries keep the id): still applied once.
      const sameId = delivery(userEvent('user.updated', clerkId, { public_metadata: { role: 'admin' }, updated_at: 1715600009000 }), { id: demote.headers['svix-id'] })
      t.same((await server.inject(sameId)).json(), { success: true, ignored: true })
      t.equal(await role(), 'user')
      t.same(await sql.query('select count(*)::int as n from webhook_deliveries where id = $1', [demote.headers['svix-id']]), [{ n: 1 }])
    })

    t.test('an event older than the last one applied is ignored', async t => {
      const id = `${clerkId}_order`
      const newer = delivery(userEvent('user.updated', id, { first_name: 'New', public_metadata: { role: 'admin' }, updated_at: 1715600005000 }))
      const older = delivery(userEvent('user.updated', id, { first_name: 'Old', public_metadata: {}, updated_at: 1715600004000 }))
      t.same((await server.inject(newer)).json(), { success: true })
      t.same((await server.inject(older)).json(), { success: true, ignored: true }, 'arrived last, happened first')
      t.match(await server.store.getUserByClerkId(id), { name: 'New Lovelace', role: 'admin' })
    })

    t.test('an update or creation arriving after the deletion does not bring the user back', async t => {
      const id = `${clerkId}_gone`
      const created = delivery(userEvent('user.created', id, { updated_at: 1715600000000 }))
      const updated = delivery(userEvent('user.updated', id, { public_metadata: { role: 'admin' }, updated_at: 1715600002000 }))
      t.same((await server.inject(created)).json(), { success: true })
      t.same((await server.inject(delivery({ ...deletedEvent(id), timestamp: 1715600003000 }))).json(), { success: true })
      t.equal(await server.store.getUserByClerkId(id), null)

      t.same((await server.inject(updated)).json(), { success: true, ignored: true }, 'a late user.updated')
      t.same((await server.inject(delivery(userEvent('user.updated', id, { updated_at: 1715600009000 })))).json(), { success: true, ignored: true }, 'even a newer one')
      t.same((await server.inject(delivery(userEvent('user.created', id)))).json(), { success: true, ignored: true }, 'a late user.created')
      t.equal(await server.store.getUserByClerkId(id), null, 'the user stays deleted')
    })

    t.test('a deletion that arrives before the creation still wins', async t => {
      const id = `${clerkId}_early_delete`
      t.same((await server.inject(delivery({ ...deletedEvent(id), timestamp: 1715600003000 }))).json(), { success: true })
      t.same((await server.inject(delivery(userEvent('user.created', id, { updated_at: 1715600000000 })))).json(), { success: true, ignored: true })
      t.equal(await server.store.getUserByClerkId(id), null)
    })

    t.test('concurrent copies of one delivery are applied once', async t => {
      const id = `${clerkId}_race`
      const created = delivery(userEvent('user.created', id, { public_metadata: { role: 'admin' }, updated_at: 1715600000000 }))
      const results = await Promise.all(Array.from({ length: 8 }, () => server.inject(created)))
      t.same(results.map(r => r.statusCode), Array(8).fill(200))
      t.equal(results.filter(r => r.json().ignored === undefined).length, 1, 'one copy applied, the others acknowledged as seen')
      t.same(await sql.query('select count(*)::int as n from users where clerk_id = $1', [id]), [{ n: 1 }])

      // Distinct deliveries racing for one user: whatever the arrival order, the newest wins.
      const updates = [3, 1, 4, 2].map(n => delivery(userEvent('user.updated', id, { first_name: `V${n}`, updated_at: 1715600000000 + n * 1000 })))
      const raced = await Promise.all(updates.map(u => server.inject(u)))
      t.same(raced.map(r => r.statusCode), [200, 200, 200, 200])
      t.equal((await server.store.getUserByClerkId(id))?.name, 'V4 Lovelace')
    })
  })
}

t.test('old delivery ids are pruned as new deliveries arrive', async t => {
  const { driver, sql } = await testBackends()[0].open(t)
  const server = await buildApp(t, { env: { CLERK_WEBHOOK_SECRET: SECRET }, driver })
  await sql.query("insert into webhook_deliveries (id, received_at) select 'old_' || n, now() - interval '4 days' from generate_series(1, 30) n")
  await sql.query("insert into webhook_deliveries (id, received_at) values ('recent', now() - interval '2 days')")
  await server.inject(delivery(userEvent('user.created', 'user_prune_1')))
  t.same(await sql.query("select count(*)::int as n from webhook_deliveries where id like 'old_%'"), [{ n: 10 }], 'a bounded batch per delivery')
  await server.inject(delivery(userEvent('user.updated', 'user_prune_1')))
  t.same(await sql.query("select count(*)::int as n from webhook_deliveries where id like 'old_%'"), [{ n: 0 }])
  t.same(await sql.query("select id from webhook_deliveries where id = 'recent'"), [{ id: 'recent' }], 'ids inside the retention are kept')
})
