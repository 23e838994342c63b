import { randomUUID } from 'node:crypto'
import t from 'tap'
import { DependencyUnavailableError } from '../../lib/errors.js'
import { Store } from '../../plugins/app/supabase/store.js'
import { pruneRun } from '../../plugins/app/retention.js'
import { decryptPrivateKey, generateSigningKey } from '../../plugins/app/keys.js'
import type { SendInput, SendResult } from '../../schemas/messages.js'
import type { User, UserInput } from '../../schemas/users.js'
import { testBackends } from '../helpers/backends.js'

// One contract, every backend: the same assertions must hold on each of them,
// down to the exact timestamp strings.
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** A template the store did create (null means its name was taken). */
async function created<T> (template: Promise<T | null>): Promise<T> {
  const value = await template
  if (value === null) throw new Error('template name taken')
  return value
}

for (const backend of testBackends()) {
  t.test(`the store on ${backend.name}`, { skip: backend.skip }, async t => {
    const { driver, sql } = await backend.open(t)
    const store = new Store(driver, 30_000)
    t.equal(store.backend, backend.name)

    let users = 0
    async function user (input: UserInput = {}): Promise<User> {
      const created = await store.upsertUser({ id: `user_${++users}`, organization_id: 'org_a', ...input })
      if (!created) throw new Error('unexpected clerk_id conflict')
      return created
    }

    async function sent (input: SendInput): Promise<SendResult> {
      const outcome = await store.send(input)
      if (!outcome.ok) throw new Error(`send refused: ${outcome.error}`)
      return outcome.result
    }

    // Messages kept for good; a run may follow the last one at once.
    const pruneNow = { ackedTtl: 0, unackedTtl: 0, idempotencyTtl: 86400, batch: 1000, everyMs: 0 }

    const sendFrom = (sender: User): SendInput => ({
      senderId: sender.id,
      senderOrganizationId: sender.organizationId,
      senderIsAdmin: sender.role === 'admin',
      recipientIds: [],
      content: 'hello',
      templateId: null,
      idempotencyKey: null,
      requestHash: null
    })

    t.test('answers a health check', async t => {
      await t.resolves(store.ping())
    })

    t.test('creates, reads and updates users; absent keys keep their value', async t => {
      const created = await store.upsertUser({ id: 'alice', clerk_id: 'clerk_alice', email: 'alice@example.com', name: 'Alice', organization_id: 'org_a' })
      t.match(created, {
        id: 'alice',
        clerkId: 'clerk_alice',
        email: 'alice@example.com',
        name: 'Alice',
        planType: 'free',
        credits: 0,
        organizationId: 'org_a',
        role: 'user',
        createdAt: ISO,
        updatedAt: ISO
      })
      t.same(await store.getUser('alice'), created)
      t.same(await store.getUserByClerkId('clerk_alice'), created)
      t.equal(await store.getUser('nobody'), null)
      t.equal(await store.getUserByClerkId('clerk_nobody'), null)

      const updated = await store.upsertUser({ id: 'alice', name: 'Alice B', credits: 5, plan_type: 'pro', role: 'admin' })
      t.same(updated, { ...created, name: 'Alice B', credits: 5, planType: 'pro', role: 'admin', updatedAt: updated?.updatedAt })
      t.ok(updated!.updatedAt >= created!.updatedAt, 'updatedAt moves forward')

      const cleared = await store.upsertUser({ id: 'alice', email: null, organization_id: null })
      t.match(cleared, { email: null, organizationId: null, name: 'Alice B', clerkId: 'clerk_alice', role: 'admin' })
      t.same(await store.getUser('alice'), cleared)
    })

    t.test('finds a user by clerk id when no id is given', async t => {
      const first = await store.upsertUser({ clerk_id: 'clerk_bob', email: 'bob@example.com' })
      t.match(first, { id: UUID, clerkId: 'clerk_bob', email: 'bob@example.com', name: null })
      const again = await store.upsertUser({ clerk_id: 'clerk_bob', name: 'Bob' })
      t.match(again, { id: first!.id, email: 'bob@example.com', name: 'Bob' })
    })

    t.test('a clerk id belongs to one user only', async t => {
      await user({ id: 'carol', clerk_id: 'clerk_carol' })
      t.equal(await store.upsertUser({ id: 'dave', clerk_id: 'clerk_carol' }), null, 'a new user cannot take it')
      t.equal(await store.getUser('dave'), null, 'and is not created')

      const dave = await user({ id: 'dave', clerk_id: 'clerk_dave', name: 'Dave' })
      t.equal(await store.upsertUser({ id: 'dave', clerk_id: 'clerk_carol', name: 'Carol?' }), null, 'an existing user cannot take it')
      t.same(await store.getUser('dave'), dave, 'and is unchanged')
      t.equal((await store.getUserByClerkId('clerk_carol'))?.id, 'carol')
    })

    t.test('deleting a user removes their tokens, templates and inbox', async t => {
      const doomed = await user({ clerk_id: 'clerk_doomed' })
      const other = await user()
      const tokenId = randomUUID()
      await store.createApiToken({ id: tokenId, userId: doomed.id, createdBy: null, name: null, expiresAt: null })
      await store.createTemplate({ organizationId: null, ownerId: doomed.id }, { name: 'mine', content: 'x' })
      await sent({ ...sendFrom(other), recipientIds: [doomed.id, other.id] })

      t.same(await store.deleteUser({ clerkId: 'clerk_doomed' }), [doomed.id])
      t.equal(await store.getUser(doomed.id), null)
      t.same(await store.getUsers([doomed.id, other.id]).then(found => found.map(u => u.id)), [other.id], 'nor found by the batched lookup of sockets connecting together')
      t.same(await store.usersPresent([doomed.id, other.id]), [other.id], 'nor present for the re-check of open sockets')
      t.equal(await store.authenticateApiToken(tokenId), null)
      t.same(await store.listTemplates({ organizationId: null, ownerId: doomed.id }), [])
      t.same(await store.findUsers({ clerkId: 'clerk_doomed' }), [], 'no longer found by clerk id')
      t.equal(await store.createApiToken({ id: randomUUID(), userId: doomed.id, createdBy: null, name: null, expiresAt: null }), null, 'no new token')
      t.equal(await store.upsertUser({ id: doomed.id, name: 'back' }), null, 'the id is not taken again while the data goes')

      // The inbox goes in batches, then the row.
      t.match(await pruneRun(store, pruneNow), { userMessages: 1, users: 1 })
      t.same(await store.inbox(doomed.id, null, 10), [])
      t.same(await sql.query('select id from users where id = $1', [doomed.id]), [], 'the row is gone once the inbox is')
      t.equal((await store.inbox(other.id, null, 10)).length, 1, 'other recipients keep the message')
      t.ok(await store.upsertUser({ id: doomed.id, name: 'back' }), 'the id is free again')
      await store.deleteUser({ id: doomed.id })

      t.same(await store.usersPresent([doomed.id, other.id, 'nobody']), [other.id], 'only users still stored are present')
      t.same(await store.usersPresent([]), [])
      t.same(await store.deleteUser({ id: other.id }), [other.id])
      t.same(await store.deleteUser({ id: other.id }), [], 'deleting again deletes nothing')
      t.same(await store.deleteUser({ clerkId: 'clerk_nobody' }), [])
    })

    t.test('signing keys: one current and next however many processes start at once; rotate; retire', async t => {
      const KEK = 'k'.repeat(40)
      t.same(await store.signingKeys(), [])
      t.equal(await store.rotateSigningKeys(generateSigningKey(KEK)), null, 'nothing to rotate before the first keys')
      const inits = await Promise.all([1, 2, 3].map(() => store.initSigningKeys(generateSigningKey(KEK), generateSigningKey(KEK))))
      const keys = await store.signingKeys()
      t.same(keys.map(k => k.state).sort(), ['current', 'next'])
      for (const init of inits) t.same(init.map(k => k.kid), keys.map(k => k.kid), 'every starter sees the same keys')
      const current = keys.find(k => k.state === 'current')!
      const next = keys.find(k => k.state === 'next')!
      t.equal(next.privateKey, null, 'only the current private key is handed out')
      t.match(decryptPrivateKey(KEK, current.kid, current.privateKey!), /BEGIN PRIVATE KEY/)
      t.throws(() => decryptPrivateKey('x'.repeat(40), current.kid, current.privateKey!), 'another encryption key cannot read it')

      const rotated = (await store.rotateSigningKeys(generateSigningKey(KEK)))!
      const state = (kid: string) => rotated.find(k => k.kid === kid)?.state
      t.equal(state(current.kid), 'previous')
      t.equal(state(next.kid), 'current')
      t.equal(rotated.filter(k => k.state === 'next').length, 1)

      t.same(await store.retireSigningKey(next.kid), { error: 'active', state: 'current' })
      t.same(await store.retireSigningKey('nope'), { error: 'not_found' })
      const retired = await store.retireSigningKey(current.kid)
      t.equal(retired.keys?.find(k => k.kid === current.kid)?.state, 'retired')
      t.equal((await store.retireSigningKey(current.kid)).keys?.find(k => k.kid === current.kid)?.state, 'retired', 'idempotent')
    })

    t.test('API tokens: create, authenticate, list, revoke', async t => {
      const admin = await user({ role: 'admin', name: 'Admin' })
      const owner = await user({ name: 'Owner' })
      t.equal(await store.createApiToken({ id: randomUUID(), userId: 'nobody', createdBy: admin.id, name: null, expiresAt: null }), null, 'unknown user')

      const firstId = randomUUID()
      const created = await store.createApiToken({ id: firstId, userId: owner.id, createdBy: admin.id, name: 'ci', expiresAt: '2030-01-02T03:04:05.678+02:00' })
      t.same(created?.user, owner)
      t.same(created?.token, {
        id: firstId,
        userId: owner.id,
        createdBy: admin.id,
        name: 'ci',
        scopes: null,
        sendsPerMinute: null,
        sendQuota: null,
        sendQuotaRemaining: null,
        expiresAt: '2030-01-02T01:04:05.678Z',
        revokedAt: null,
        lastUsedAt: null,
        createdAt: created?.token.createdAt
      })
      t.match(created?.token.createdAt, ISO)

      const authenticated = await store.authenticateApiToken(firstId)
      t.same(authenticated?.user, owner)
      t.match(authenticated?.token, { id: firstId, lastUsedAt: ISO, revokedAt: null, expiresAt: '2030-01-02T01:04:05.678Z' })
      t.equal(await store.authenticateApiToken(randomUUID()), null, 'unknown token')

      const secondId = randomUUID()
      await store.createApiToken({ id: secondId, userId: owner.id, createdBy: null, name: null, expiresAt: null, scopes: ['inbox:read', 'templates:read'] })
      const listed = await store.listApiTokens(owner.id)
      t.same(listed.map(token => token.id), [secondId, firstId], 'newest first')
      t.same(listed[0].scopes, ['inbox:read', 'templates:read'], 'scopes are kept in order')
      t.same((await store.authenticateApiToken(secondId))?.token.scopes, ['inbox:read', 'templates:read'])
      t.same(listed[1], authenticated?.token)
      t.same(await store.listApiTokens(admin.id), [])
      const all = (await store.listApiTokens(null)).map(token => token.id)
      t.ok(all.includes(firstId) && all.includes(secondId), 'every user when no user is given')

      const revoked = await store.revokeApiToken(firstId)
      t.match(revoked, { id: firstId, revokedAt: ISO })
      const again = await store.revokeApiToken(firstId)
      t.equal(again?.revokedAt, revoked?.revokedAt, 'revoking twice keeps the first time')
      t.equal(await store.revokeApiToken(randomUUID()), null, 'unknown token')
      t.equal((await store.authenticateApiToken(firstId))?.token.revokedAt, revoked?.revokedAt, 'a revoked token is reported as revoked')
      t.equal((await store.authenticateApiToken(secondId))?.token.revokedAt, null, 'other tokens stay valid')
    })

    t.test('a token\'s send quota: one unit per accepted send, never below zero, nothing for refused sends or replays', async t => {
      const owner = await user({ organization_id: 'org_q' })
      const colleague = await user({ organization_id: 'org_q' })
      const tokenId = randomUUID()
      const created = await store.createApiToken({ id: tokenId, userId: owner.id, createdBy: null, name: null, expiresAt: null, sendsPerMinute: 7, sendQuota: 2 })
      t.match(created?.token, { sendsPerMinute: 7, sendQuota: 2, sendQuotaRemaining: 2 })
      const input = { ...sendFrom(owner), recipientIds: [colleague.id, owner.id], tokenId }

      t.match(await sent({ ...input, idempotencyKey: 'q1', requestHash: 'h1' }), { count: 2, sendQuota: 2, sendQuotaRemaining: 1 })
      t.match(await sent({ ...input, idempotencyKey: 'q1', requestHash: 'h1' }), { replayed: true, sendQuotaRemaining: 1 }, 'a replay takes nothing')
      t.same(await store.send({ ...input, recipientIds: ['ghost'] }), { ok: false, error: 'invalid_recipients', ids: ['ghost'] })
      t.equal((await store.authenticateApiToken(tokenId))?.token.sendQuotaRemaining, 1, 'a refused send takes nothing')
      t.match(await sent(input), { sendQuotaRemaining: 0 })
      t.same(await store.send({ ...input, idempotencyKey: 'q2', requestHash: 'h2' }), { ok: false, error: 'quota_exhausted', sendQuota: 2 })
      t.equal((await store.authenticateApiToken(tokenId))?.token.sendQuotaRemaining, 0, 'never below zero')
      t.same(await store.pendingMessages(colleague.id, 0, 10).then(m => m.length), 2, 'only the accepted sends were stored')
      t.match(await sent({ ...input, idempotencyKey: 'q2', requestHash: 'h3' }).catch(e => String(e)), /quota_exhausted/, 'the refused key was not kept')
      t.notOk('sendQuota' in await sent({ ...sendFrom(owner), recipientIds: [colleague.id] }), 'a send without a token has no quota')
    })

    t.test('templates are scoped by organization, or by owner when there is none', async t => {
      const a1 = await user({ organization_id: 'org_t' })
      const a2 = await user({ organization_id: 'org_t' })
      const b = await user({ organization_id: 'org_u' })
      const solo = await user({ organization_id: null })
      const solo2 = await user({ organization_id: null })
      const orgT = { organizationId: 'org_t', ownerId: a1.id }

      const shared = await created(store.createTemplate(orgT, { name: 'hello', content: 'Hi {{name}}' }))
      t.same(shared, { id: shared.id, name: 'hello', content: 'Hi {{name}}', organizationId: 'org_t', ownerId: a1.id, createdAt: shared.createdAt })
      t.match(shared, { id: UUID, createdAt: ISO })
      const second = await created(store.createTemplate(orgT, { name: 'bye', content: 'Bye' }))

      const colleague = { organizationId: 'org_t', ownerId: a2.id }
      t.same(await store.listTemplates(colleague), [shared, second], 'the whole organization sees them, oldest first')
      t.same(await store.getTemplate(colleague, shared.id), shared)
      const stranger = { organizationId: 'org_u', ownerId: b.id }
      t.same(await store.listTemplates(stranger), [])
      t.equal(await store.getTemplate(stranger, shared.id), null)
      t.equal(await store.deleteTemplate(stranger, shared.id), false)

      const own = { organizationId: null, ownerId: solo.id }
      const mine = await created(store.createTemplate(own, { name: 'private', content: 'just me' }))
      t.match(mine, { organizationId: null, ownerId: solo.id })
      t.same(await store.listTemplates(own), [mine])
      t.same(await store.listTemplates({ organizationId: null, ownerId: solo2.id }), [])
      t.equal(await store.getTemplate({ organizationId: null, ownerId: solo2.id }, mine.id), null)
      t.equal(await store.deleteTemplate({ organizationId: null, ownerId: solo2.id }, mine.id), false)
      t.same(await store.listTemplates({ organizationId: 'org_t', ownerId: solo.id }), [shared, second], 'an organization does not see private templates')

      await t.test('names are unique within a scope, and find takes an id or a name', async t => {
        t.equal(await store.createTemplate(colleague, { name: 'hello', content: 'again' }), null, 'the organization has a "hello"')
        t.same(await store.listTemplates(colleague), [shared, second], 'nothing was added')
        const strangers = await created(store.createTemplate(stranger, { name: 'hello', content: 'theirs' }))
        t.equal(await store.createTemplate({ organizationId: null, ownerId: solo2.id }, { name: 'private', content: 'mine too' }).then(x => x?.name), 'private', 'private names are per owner')
        t.same(await store.findTemplate(colleague, 'hello'), shared)
        t.same(await store.findTemplate(colleague, shared.id), shared)
        t.same(await store.findTemplate(colleague, shared.id.toUpperCase()), shared)
        t.same(await store.findTemplate(stranger, 'hello'), strangers, 'each organization finds its own')
        t.same(await store.findTemplate(own, 'private'), mine)
        t.equal(await store.findTemplate(colleague, 'private'), null)
        t.equal(await store.findTemplate(colleague, randomUUID()), null)
        t.equal(await store.findTemplate(stranger, shared.id), null, "another organization's id is not found")
        const uuidNamed = await created(store.createTemplate(colleague, { name: second.id, content: 'named like an id' }))
        t.same(await store.findTemplate(colleague, second.id), second, 'an id wins over a name that looks like one')
        t.same(await store.findTemplate(colleague, uuidNamed.id), uuidNamed)
        await store.deleteTemplate(colleague, uuidNamed.id)
      })

      t.equal(await store.deleteTemplate(colleague, shared.id), true)
      t.equal(await store.deleteTemplate(colleague, shared.id), false, 'already deleted')
      t.equal(await store.getTemplate(orgT, shared.id), null)
      t.equal(await store.getTemplate(orgT, randomUUID()), null)
      t.equal(await store.deleteTemplate(own, mine.id), true)
    })

    t.test('send refuses unknown and foreign recipients and stores nothing', async t => {
      const sender = await user({ organization_id: 'org_s' })
      const colleague = await user({ organization_id: 'org_s' })
      const outsider = await user({ organization_id: 'org_other' })

      const refused = await store.send({ ...sendFrom(sender), recipientIds: [colleague.id, 'ghost_1', outsider.id, 'ghost_2'] })
      t.same(refused, { ok: false, error: 'invalid_recipients', ids: ['ghost_1', outsider.id, 'ghost_2'] })
      t.same(await store.inbox(colleague.id, null, 10), [], 'valid recipients got nothing either')

      const loner = await user({ organization_id: null })
      t.same(await store.send({ ...sendFrom(loner), recipientIds: [colleague.id] }), { ok: false, error: 'invalid_recipients', ids: [colleague.id] })
      t.equal((await sent({ ...sendFrom(loner), recipientIds: [loner.id] })).count, 1, 'without an organization one may write to oneself')

      const result = await sent({ ...sendFrom(sender), recipientIds: [colleague.id, sender.id] })
      t.match(result, { count: 2, createdAt: ISO, replayed: false })
      t.same(result.messages.map(m => m.recipientId), [colleague.id, sender.id])
      for (const message of result.messages) t.match(message, { id: UUID })
      t.match(result.seqs, [Number, Number])
    })

    t.test('admins may send to anyone', async t => {
      const admin = await user({ organization_id: 'org_admin', role: 'admin' })
      const outsider = await user({ organization_id: 'org_other' })
      const loner = await user({ organization_id: null })
      const result = await sent({ ...sendFrom(admin), recipientIds: [outsider.id, loner.id] })
      t.same(result.messages.map(m => m.recipientId), [outsider.id, loner.id])
      t.same(await store.send({ ...sendFrom(admin), recipientIds: ['ghost'] }), { ok: false, error: 'invalid_recipients', ids: ['ghost'] }, 'but only to users that exist')
    })

    t.test('an idempotency key replays the first send, refuses another body, and is scoped per caller', async t => {
      const sender = await user({ organization_id: 'org_i' })
      const other = await user({ organization_id: 'org_i' })
      const recipient = await user({ organization_id: 'org_i' })
      const keyed = { ...sendFrom(sender), recipientIds: [recipient.id], idempotencyKey: 'key-1', requestHash: 'hash-1' }

      const first = await sent(keyed)
      t.equal(first.replayed, false)
      const replay = await sent(keyed)
      t.same(replay, { ...first, seqs: [], replayed: true }, 'the same response, and nothing to deliver')
      t.equal((await store.inbox(recipient.id, null, 10)).length, 1, 'stored once')

      t.same(await store.send({ ...keyed, requestHash: 'hash-2' }), { ok: false, error: 'idempotency_mismatch' })

      const theirs = await sent({ ...keyed, ...sendFrom(other), recipientIds: [recipient.id], idempotencyKey: 'key-1', requestHash: 'hash-2' })
      t.equal(theirs.replayed, false, "another caller's key is a different key")
      t.not(theirs.messages[0].id, first.messages[0].id)
      t.equal((await store.inbox(recipient.id, null, 10)).length, 2)

      const refused = await store.send({ ...keyed, recipientIds: ['ghost'], idempotencyKey: 'key-2' })
      t.match(refused, { ok: false, error: 'invalid_recipients' })
      const corrected = await sent({ ...keyed, idempotencyKey: 'key-2', requestHash: 'hash-3' })
      t.equal(corrected.replayed, false, 'a refused send does not hold its key')
    })

    t.test('idempotency keys older than a day are pruned', async t => {
      const sender = await user({ organization_id: 'org_p' })
      const keyed = { ...sendFrom(sender), recipientIds: [sender.id], idempotencyKey: 'old-key', requestHash: 'hash-1' }
      await sent(keyed)
      t.match(await store.prune(pruneNow), { ran: true, idempotencyKeys: 0 }, 'nothing is old yet')
      await sql.query("update idempotency_keys set created_at = now() - interval '25 hours' where key = 'old-key'")
      t.match(await store.prune(pruneNow), { ran: true, idempotencyKeys: 1 })
      t.equal((await sent({ ...keyed, requestHash: 'hash-2' })).replayed, false, 'the key is free again')
    })

    t.test('a 10,000-recipient send is stored and returned in order', async t => {
      await sql.query("insert into users (id, organization_id) select 'bulk_' || g, 'org_bulk' from generate_series(1, 10000) g")
      // A permutation, so order cannot come from sorting by id.
      const recipientIds = Array.from({ length: 10_000 }, (_, i) => `bulk_${(i * 7919) % 10_000 + 1}`)
      const sender = (await store.getUser('bulk_1'))!
      const result = await sent({ ...sendFrom(sender), recipientIds, content: 'to everyone' })
      t.equal(result.count, 10_000)
      t.ok(result.messages.map(m => m.recipientId).every((id, i) => id === recipientIds[i]), 'in the order given')
      t.equal(new Set(result.messages.map(m => m.id)).size, 1, 'one id, the send\'s, for every recipient\'s message')
      t.equal(result.seqs.length, 10_000)
      t.ok(result.seqs.every((seq, i) => i === 0 || seq > result.seqs[i - 1]), 'delivery order follows')
      for (const i of [0, 4_999, 9_999]) {
        t.match(await store.pendingMessages(recipientIds[i], 0, 10), [{ id: result.messages[i].id, seq: result.seqs[i], content: 'to everyone', senderId: 'bulk_1' }],
          'each seq is its recipient\'s message')
      }
    })

    t.test('pending and inbox list oldest first from a cursor; ack removes from pending', async t => {
      const sender = await user({ organization_id: 'org_m' })
      const reader = await user({ organization_id: 'org_m' })
      const template = await created(store.createTemplate({ organizationId: 'org_m', ownerId: sender.id }, { name: 't', content: 'three' }))
      const ids: string[] = []
      for (const [content, templateId] of [['one', null], ['two', null], ['three', template.id]]) {
        ids.push((await sent({ ...sendFrom(sender), recipientIds: [reader.id], content: content!, templateId })).messages[0].id)
      }

      const pending = await store.pendingMessages(reader.id, 0, 10)
      t.same(pending.map(m => m.id), ids)
      t.same(pending.map(m => m.content), ['one', 'two', 'three'])
      t.same(pending[0], { id: ids[0], seq: pending[0].seq, senderId: sender.id, content: 'one', templateId: null, createdAt: pending[0].createdAt, acked: false })
      t.match(pending[0].createdAt, ISO)
      t.equal(pending[2].templateId, template.id)

      const page = await store.pendingMessages(reader.id, 0, 2)
      t.same(page.map(m => m.id), ids.slice(0, 2))
      t.same((await store.pendingMessages(reader.id, page[1].seq, 2)).map(m => m.id), ids.slice(2))
      t.same(await store.pendingMessages(reader.id, pending[2].seq, 2), [])

      t.equal(await store.ack(reader.id, [ids[0], ids[1]]), 2)
      t.equal(await store.ack(reader.id, [ids[0]]), 0, 'already acknowledged')
      t.equal(await store.ack(sender.id, [ids[2]]), 0, "one cannot acknowledge another's message")
      t.equal(await store.ack(reader.id, []), 0)
      t.equal(await store.ack(reader.id, [randomUUID()]), 0)

      t.same((await store.pendingMessages(reader.id, 0, 10)).map(m => m.id), [ids[2]])
      const inbox = await store.inbox(reader.id, null, 10)
      t.same(inbox.map(m => [m.id, m.acked]), [[ids[0], true], [ids[1], true], [ids[2], false]])
      t.same((await store.inbox(reader.id, { xact: inbox[0].xact!, seq: inbox[0].seq }, 10)).map(m => m.id), ids.slice(1))
      t.same((await store.inbox(reader.id, null, 1)).map(m => m.id), ids.slice(0, 1))
      t.same(await store.inbox(sender.id, null, 10), [])
    })

    t.test('many sockets connecting: users and who has anything pending, in one call each', async t => {
      const sender = await user({ organization_id: 'org_c' })
      const [waiting, done, idle] = [await user({ organization_id: 'org_c' }), await user({ organization_id: 'org_c' }), await user({ organization_id: 'org_c' })]
      const found = await store.getUsers([waiting.id, 'nobody', done.id, waiting.id])
      t.same(found.sort((a, b) => a.id.localeCompare(b.id)), [waiting, done].sort((a, b) => a.id.localeCompare(b.id)), 'existing users as getUser reads them; unknown ids left out')
      t.same(await store.getUsers([]), [])

      const [toWaiting, toDone] = (await sent({ ...sendFrom(sender), recipientIds: [waiting.id, done.id], content: 'connect' })).messages
      t.equal(await store.ack(done.id, [toDone.id]), 1)
      t.same(await store.pendingRecipients([idle.id, waiting.id, done.id, 'nobody', waiting.id]), [waiting.id], 'only recipients with unacknowledged messages, once each')
      t.equal(await store.ack(waiting.id, [toWaiting.id]), 1)
      t.same(await store.pendingRecipients([waiting.id, done.id]), [], 'nothing once everything is acknowledged')
      t.same(await store.pendingRecipients([]), [])
    })

    t.test("acks of many recipients are written in one call, each only for the recipient's own messages", async t => {
      const sender = await user({ role: 'admin' })
      const [ann, ben] = [await user(), await user()]
      const [forAnn, forBen] = (await sent({ ...sendFrom(sender), recipientIds: [ann.id, ben.id] })).messages.map(m => m.id)
      t.equal(await store.ackMany([{ recipientId: ann.id, id: forAnn }, { recipientId: ann.id, id: forBen }, { recipientId: ben.id, id: forBen }]), 2)
      t.same(await store.pendingMessages(ann.id, 0, 10), [])
      t.same(await store.pendingMessages(ben.id, 0, 10), [])
      t.equal(await store.ackMany([]), 0)
    })
  })
}

for (const backend of testBackends()) {
  t.test(`a mistake in a call is an error, not an outage, on ${backend.name}`, { skip: backend.skip }, async t => {
    const driver = await backend.driver(t)
    const missing = await driver.call('gatehouse_no_such_function', {}, AbortSignal.timeout(30_000)).then(() => null, (e: unknown) => e)
    t.ok(missing, 'an unknown function is refused')
    t.equal(driver.isUnavailable(missing), false)

    const store = new Store(driver, 30_000)
    const badInput = await store.getTemplate({ organizationId: 'org', ownerId: 'someone' }, 'not-a-uuid').then(() => null, (e: unknown) => e)
    t.ok(badInput, 'a value of the wrong type is refused')
    t.notOk(badInput instanceof DependencyUnavailableError)
  })
}
