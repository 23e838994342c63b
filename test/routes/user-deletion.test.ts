import t from 'tap'
import { createPostgresDriver } from '../../plugins/app/supabase/drivers/postgres.js'
import { migrate } from '../../plugins/app/supabase/migrate.js'
import { accessTokenFor, apiTokenFor, buildApp, createUser } from '../helpers/app.js'
import { freshDatabase, requireDatabaseUrl } from '../helpers/backends.js'
import { signedClerkDelivery, webhookSecret } from '../helpers/clerk.js'
import { listen, Peer, sendDirect, ticketFor, wsUrl } from '../ws/helpers.js'

const SECRET = webhookSecret()
/** Far below what deleting 500,000 messages in one statement takes (0.3 to 1 s here), far above a batch of 500. */
const STORE_TIMEOUT_MS = 200
const INBOX = 500_000

function userDeleted (clerkId: string) {
  return signedClerkDelivery(SECRET, { object: 'event', type: 'user.deleted', data: { id: clerkId, object: 'user', deleted: true } })
}

t.test('deleting a user with a large inbox within a small store timeout: refused at once, data gone in batches', async t => {
  const url = await freshDatabase(t, requireDatabaseUrl())
  const admin = createPostgresDriver(url, { timeoutMs: 600_000, max: 1 })
  t.after(() => admin.close())
  await migrate(admin.sql)
  const app = await buildApp(t, {
    driver: createPostgresDriver(url, { timeoutMs: STORE_TIMEOUT_MS, max: 4 }),
    env: { STORE_TIMEOUT_MS: String(STORE_TIMEOUT_MS), CLERK_WEBHOOK_SECRET: SECRET, PRUNE_BATCH: '500' }
  })
  const base = await listen(app)

  const doomed = await createUser(app, { clerk_id: 'clerk_big_inbox' })
  const friend = await createUser(app)
  const api = await apiTokenFor(app, doomed)
  const access = accessTokenFor(app, doomed)
  const socket = await Peer.ready(t, wsUrl(base, ticketFor(app, doomed)))
  // A long history (acknowledged, so the socket is not replayed 500,000 messages), and one
  // message shared with a friend, whose copy must survive.
  await admin.sql.query(`
    with b as (insert into message_bodies (sender_id, content) select 'seed', 'history' from generate_series(1, 200) returning id)
    insert into messages (body_id, recipient_id, acked_at) select b.id, $1, now() from b, generate_series(1, $2::int / 200)`, [doomed.id, INBOX])
  // Statistics, as autovacuum keeps them for a table that grew over time.
  await admin.sql.query('analyze messages')
  await sendDirect(app, friend, [doomed.id, friend.id], 'shared')

  const inbox = (token: string) => app.inject({ url: '/api/messages/inbox?limit=1', headers: { authorization: `Bearer ${token}` } })
  t.equal((await inbox(api.token)).statusCode, 200, 'the token works before')

  const deletion = userDeleted('clerk_big_inbox')
  const deleted = await app.inject(deletion)
  t.equal(deleted.statusCode, 200, 'the deletion is accepted within the store timeout')
  t.same(deleted.json(), { success: true })
  for (const [kind, token] of [['API', api.token], ['access', access]]) {
    const refused = await inbox(token)
    t.equal(refused.statusCode, 401, `the ${kind} token is refused at once`)
    t.match(refused.json(), { success: false, statusCode: 401, code: 'UNAUTHORIZED' })
  }
  t.equal((await socket.untilClosed()).closed.code, 4003, 'the socket is closed as removed')
  t.equal((await app.inject({ url: '/websocket-token/', headers: { authorization: `Bearer ${access}` } })).statusCode, 401, 'no new socket')
  t.equal(await app.store.getUserByClerkId('clerk_big_inbox'), null)

  // As the service's timer does: run after run until done. A batch that meets a load spike
  // past the timeout is rolled back and retried by the next run.
  const totals = { batches: 0, userMessages: 0, users: 0, failedRuns: 0 }
  for (let run = 0; run < 50 && totals.users === 0; run++) {
    try {
      const done = await app.prune()
      totals.batches += done.batches
      totals.userMessages += done.userMessages
      totals.users += done.users
    } catch (error) {
      t.match(error, { statusCode: 503 }, 'a batch can only time out, changing nothing')
      totals.failedRuns++
    }
  }
  t.comment(`${totals.batches} batches, ${totals.failedRuns} runs stopped by a timeout`)
  t.equal(totals.userMessages, INBOX + 1, 'the inbox went')
  t.ok(totals.batches >= INBOX / 500, 'in batches of at most 500')
  t.equal(totals.users, 1)
  t.same(await admin.sql.query('select count(*)::int as n from messages where recipient_id = $1', [doomed.id]), [{ n: 0 }])
  t.same(await admin.sql.query('select id from users where id = $1', [doomed.id]), [], 'then the user row')
  t.same(await admin.sql.query('select content from message_bodies'), [{ content: 'shared' }], "bodies went with their last message; the friend's stays")
  t.match(JSON.parse((await inbox(accessTokenFor(app, friend))).body), { messages: [{ content: 'shared' }] })

  const retried = await app.inject(deletion)
  t.same(retried.json(), { success: true, ignored: true }, "Clerk's retry of the delivery changes nothing")
})
