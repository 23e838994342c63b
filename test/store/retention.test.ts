import t from 'tap'
import { Store, type PruneSettings } from '../../plugins/app/supabase/store.js'
import { pruneRun } from '../../plugins/app/retention.js'
import type { SendInput, SendResult } from '../../schemas/messages.js'
import type { User } from '../../schemas/users.js'
import { testBackends } from '../helpers/backends.js'

const DAY = 86400
/** Acked messages kept 7 days, unacked 90, idempotency keys one; a finished run may be followed at once. */
const settings: PruneSettings = { ackedTtl: 7 * DAY, unackedTtl: 90 * DAY, idempotencyTtl: DAY, batch: 1000, everyMs: 0 }

for (const backend of testBackends()) {
  t.test(`retention on ${backend.name}`, { skip: backend.skip }, async t => {
    const { driver, sql } = await backend.open(t)
    const store = new Store(driver, 30_000)

    let users = 0
    async function user (): Promise<User> {
      const created = await store.upsertUser({ id: `ret_${++users}`, organization_id: 'org_r' })
      if (!created) throw new Error('unexpected conflict')
      return created
    }
    async function send (sender: User, recipientIds: string[], extra: Partial<SendInput> = {}): Promise<SendResult> {
      const outcome = await store.send({
        senderId: sender.id,
        senderOrganizationId: 'org_r',
        senderIsAdmin: false,
        recipientIds,
        content: 'hi',
        templateId: null,
        idempotencyKey: null,
        requestHash: null,
        ...extra
      })
      if (!outcome.ok) throw new Error(outcome.error)
      return outcome.result
    }
    // A message's id is its send's (the body's id), so a message is (id, recipient).
    type Sent = SendResult['messages'][number]
    const key = (m: Sent) => `${m.id}:${m.recipientId}`
    /** Moves a send (its body) `days` into the past. */
    const sentDaysAgo = (result: SendResult, days: number) => sql.query(
      'update message_bodies set created_at = now() - make_interval(days => $2) where id = $1',
      [result.messages[0].id, days])
    /** Acknowledges messages `days` ago. */
    const ackedDaysAgo = (messages: Sent[], days: number) => sql.query(
      `update messages m set acked_at = now() - make_interval(days => $3)
         from unnest($1::uuid[], $2::text[]) as a (id, recipient_id)
        where m.body_id = a.id and m.recipient_id = a.recipient_id`,
      [messages.map(m => m.id), messages.map(m => m.recipientId), days])
    const messageIds = async () => (await sql.query<{ id: string }>("select body_id::text || ':' || recipient_id as id from messages order by seq")).map(r => r.id)
    const bodyIds = async () => (await sql.query<{ id: string }>('select id::text as id from message_bodies order by id')).map(r => r.id)
    const bodyOf = async (result: SendResult) => result.messages[0].id

    t.test('deletes exactly what is past its lifetime, in batches', async t => {
      const sender = await user()
      const [alice, bob] = [await user(), await user()]

      // Acknowledged 8 days ago: gone. Acknowledged a day ago: kept.
      const oldAcked = await send(sender, [alice.id])
      await ackedDaysAgo([oldAcked.messages[0]], 8)
      const recentAcked = await send(sender, [alice.id])
      await ackedDaysAgo([recentAcked.messages[0]], 1)
      // Sent 91 days ago and never acknowledged: gone. Sent 89 days ago: kept.
      const stale = await send(sender, [alice.id])
      await sentDaysAgo(stale, 91)
      const waiting = await send(sender, [alice.id])
      await sentDaysAgo(waiting, 89)
      // One body, two recipients: Alice's copy goes, Bob's (unacknowledged, recent) keeps the body.
      const shared = await send(sender, [alice.id, bob.id])
      await ackedDaysAgo([shared.messages[0]], 8)
      // 25 more old acknowledged messages, to see batches of 10.
      const many = await send(sender, Array.from({ length: 25 }, (_, i) => i % 2 === 0 ? alice.id : bob.id).slice(0, 2))
      const more: SendResult[] = [many]
      for (let i = 0; i < 23; i++) more.push(await send(sender, [bob.id]))
      await ackedDaysAgo(more.flatMap(r => r.messages), 30)
      // A body without messages, as deleted users used to leave behind.
      const [{ id: orphan }] = await sql.query<{ id: string }>("insert into message_bodies (sender_id, content, created_at) values ('x', 'orphan', now() - interval '100 days') returning id::text as id")
      // Idempotency keys: two days old goes, an hour old stays.
      await send(sender, [bob.id], { idempotencyKey: 'old', requestHash: 'h' })
      await send(sender, [bob.id], { idempotencyKey: 'new', requestHash: 'h' })
      await sql.query("update idempotency_keys set created_at = now() - interval '2 days' where key = 'old'")
      await sql.query("update idempotency_keys set created_at = now() - interval '1 hour' where key = 'new'")

      const messagesBefore = await messageIds()
      const bodiesBefore = await bodyIds()
      const goneMessages = [oldAcked, stale, ...more].flatMap(r => r.messages.map(key)).concat(key(shared.messages[0]))
      const goneBodies = [orphan, await bodyOf(oldAcked), await bodyOf(stale), ...await Promise.all(more.map(bodyOf))]

      const first = await store.prune({ ...settings, batch: 10 })
      t.match(first, { ran: true, more: true, acked: 10 }, 'a batch holds at most 10 rows of a kind')
      const rest = await pruneRun(store, { ...settings, batch: 10 })
      t.ok(rest.batches >= 2, 'the rest took more batches')
      t.equal(first.ran && first.acked + rest.acked, 27, 'acknowledged more than 7 days ago')
      t.equal(first.ran && first.unacked + rest.unacked, 1, 'unacknowledged for more than 90 days')
      t.equal(first.ran && first.idempotencyKeys + rest.idempotencyKeys, 1)

      t.same(await messageIds(), messagesBefore.filter(id => !goneMessages.includes(id)), 'every other message stays')
      t.same(await bodyIds(), bodiesBefore.filter(id => !goneBodies.includes(id)).sort(), 'bodies go with their last message, and only then')
      t.same((await sql.query<{ key: string }>('select key from idempotency_keys order by key')).map(r => r.key), ['new'])

      const inbox = await store.inbox(alice.id, null, 100)
      t.same(inbox.map(m => m.id), [recentAcked, waiting].map(r => r.messages[0].id), "Alice's inbox keeps what is within its lifetime")
      t.match(inbox, [{ acked: true, content: 'hi' }, { acked: false, content: 'hi' }])
      t.same((await store.pendingMessages(bob.id, 0, 100)).map(m => m.id).slice(0, 1), [shared.messages[1].id], "Bob's copy of the shared send is still pending")
    })

    t.test('0 keeps messages for good', async t => {
      const [sender, carol] = [await user(), await user()]
      const acked = await send(sender, [carol.id])
      await ackedDaysAgo([acked.messages[0]], 3000)
      const unacked = await send(sender, [carol.id])
      await sentDaysAgo(unacked, 3000)
      await pruneRun(store, { ...settings, ackedTtl: 0, unackedTtl: 0 })
      t.same((await store.inbox(carol.id, null, 10)).map(m => m.id), [acked.messages[0].id, unacked.messages[0].id])
    })

    t.test('a replay returns the first response after its messages were pruned; an expired key sends anew', async t => {
      const [sender, dave, erin] = [await user(), await user(), await user()]
      const keyed = { idempotencyKey: 'replay-key', requestHash: 'hash' }
      const first = await send(sender, [dave.id, erin.id], keyed)
      await ackedDaysAgo(first.messages, 8)
      await sql.query("update idempotency_keys set created_at = now() - interval '23 hours' where key = 'replay-key'")
      await pruneRun(store, settings)
      t.same(await store.inbox(dave.id, null, 10), [], 'the messages are gone')
      t.same(await send(sender, [dave.id, erin.id], keyed), { ...first, seqs: [], replayed: true }, 'the response is the same')

      await sql.query("update idempotency_keys set created_at = now() - interval '25 hours' where key = 'replay-key'")
      await pruneRun(store, settings)
      const again = await send(sender, [dave.id, erin.id], keyed)
      t.equal(again.replayed, false, 'past IDEMPOTENCY_TTL the key is free')
      t.not(again.messages[0].id, first.messages[0].id)
    })

    t.test('a 10,000-recipient response is stored compactly and replayed whole', async t => {
      await sql.query("insert into users (id, organization_id) select 'compact_' || g, 'org_r' from generate_series(1, 10000) g")
      const recipientIds = Array.from({ length: 10_000 }, (_, i) => `compact_${(i * 7919) % 10_000 + 1}`)
      const sender = await user()
      const keyed = { idempotencyKey: 'big', requestHash: 'big-hash' }
      const first = await send(sender, recipientIds, keyed)
      const [{ bytes }] = await sql.query<{ bytes: number }>("select octet_length(response::text) as bytes from idempotency_keys where key = 'big'")
      t.ok(Number(bytes) < 1_000, `stored in ${bytes} bytes (the response is ${JSON.stringify(first).length})`)
      const replay = await send(sender, recipientIds, keyed)
      t.same(replay, { ...first, seqs: [], replayed: true })
      t.same(replay.messages.map(m => m.recipientId), recipientIds, 'every recipient, in the order of the request')
    })

    t.test('a finished run is not repeated before its interval, unless a user is being deleted', async t => {
      const hourly = { ...settings, everyMs: 3_600_000 }
      await pruneRun(store, hourly)
      t.match(await store.prune(hourly), { ran: false, reason: 'not_due' })
      const [sender, frank] = [await user(), await user()]
      await send(sender, [frank.id])
      t.same(await store.deleteUser({ id: frank.id }), [frank.id])
      t.match(await pruneRun(store, hourly), { userMessages: 1, users: 1 }, 'a deleted user makes the run due')
      t.match(await store.prune(hourly), { ran: false, reason: 'not_due' })
    })

    t.test('invalid settings are refused', async t => {
      await t.rejects(store.prune({ ...settings, batch: 0 }))
    })
  })
}
