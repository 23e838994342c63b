import t, { type Test } from 'tap'
import { createPostgresDriver } from '../../plugins/app/supabase/drivers/postgres.js'
import { migrate } from '../../plugins/app/supabase/migrate.js'
import { Store, type PruneSettings } from '../../plugins/app/supabase/store.js'
import { pruneRun } from '../../plugins/app/retention.js'
import type { SendResult } from '../../schemas/messages.js'
import { freshDatabase, requireDatabaseUrl } from '../helpers/backends.js'

// PGlite runs one statement at a time: races need a real Postgres server.
const settings: PruneSettings = { ackedTtl: 86400, unackedTtl: 90 * 86400, idempotencyTtl: 86400, batch: 100, everyMs: 0 }

/** Two stores on one fresh database, each with a pool of its own, as two processes have. */
async function twoProcesses (t: Test) {
  const url = await freshDatabase(t, requireDatabaseUrl())
  const drivers = [createPostgresDriver(url, { timeoutMs: 10_000, max: 4 }), createPostgresDriver(url, { timeoutMs: 10_000, max: 4 })]
  for (const driver of drivers) t.after(() => driver.close())
  await migrate(drivers[0].sql)
  const sql = drivers[0].sql
  await sql.query("insert into users (id, organization_id) select 'u' || g, 'org' from generate_series(1, 20) g")
  return { sql, stores: drivers.map(driver => new Store(driver, 10_000)) }
}

/** `count` messages to u1, acknowledged 30 days ago, each with a body of its own sent 100 days ago. */
async function seedOld (sql: Awaited<ReturnType<typeof twoProcesses>>['sql'], count: number) {
  await sql.query(`
    with b as (
      insert into message_bodies (sender_id, content, created_at)
      select 'seed', 'old', now() - interval '100 days' from generate_series(1, $1) g returning id)
    insert into messages (body_id, recipient_id, acked_at) select id, 'u1', now() - interval '30 days' from b`, [count])
}

t.test('one connection at a time prunes: the other is told it is busy, then that the run is done', async t => {
  const { sql, stores: [one, two] } = await twoProcesses(t)
  await seedOld(sql, 250)
  await sql.transaction(async tx => {
    const [{ result }] = await tx.query<{ result: unknown }>('select gatehouse_prune(86400, 0, 86400, 100, 3600000) as result')
    t.match(result, { ran: true, acked: 100 })
    // The first batch is not committed yet: the other process must not start one.
    t.same(await two.prune(settings), { ran: false, reason: 'busy' })
  })
  const hourly = { ...settings, everyMs: 3_600_000 }
  t.match(await pruneRun(two, hourly), { acked: 150 }, 'the other process continues the run, without repeating a batch')
  t.match(await one.prune(hourly), { ran: false, reason: 'not_due' }, 'a finished run is not repeated by another process')
  t.same(await sql.query('select count(*)::int as n from messages'), [{ n: 0 }])
})

t.test('two processes pruning at once delete everything due exactly once', async t => {
  const { sql, stores } = await twoProcesses(t)
  await seedOld(sql, 3000)
  const runs = await Promise.all(stores.map(store => pruneRun(store, settings)))
  t.equal(runs[0].acked + runs[1].acked, 3000)
  t.equal(runs[0].bodies + runs[1].bodies, 3000)
  t.same(await sql.query('select count(*)::int as n from message_bodies'), [{ n: 0 }])
})

t.test('sends racing with pruning keep every message and body', async t => {
  const { sql, stores: [sender, pruner] } = await twoProcesses(t)
  await seedOld(sql, 3000)
  // Bodies left without messages by older versions, for the sweep to find meanwhile.
  await sql.query("insert into message_bodies (sender_id, content, created_at) select 'seed', 'orphan', now() - interval '1 day' from generate_series(1, 1000) g")

  const state = { sending: true }
  const pruning = (async () => {
    let batches = 0
    // Keeps pruning (everyMs 0: every run is due) until the sends are done.
    while (state.sending || batches === 0) batches += (await pruneRun(pruner, { ...settings, batch: 50 })).batches
    return batches
  })()
  const sent: SendResult[] = []
  await Promise.all(Array.from({ length: 4 }, async (_, worker) => {
    for (let i = 0; i < 30; i++) {
      const recipients = Array.from({ length: 1 + (i % 3) }, (_, k) => `u${2 + ((worker * 5 + i + k) % 19)}`)
      const outcome = await sender.send({
        senderId: 'u1',
        senderOrganizationId: 'org',
        senderIsAdmin: false,
        recipientIds: [...new Set(recipients)],
        content: `new ${worker}.${i}`,
        templateId: null,
        idempotencyKey: null,
        requestHash: null
      })
      if (!outcome.ok) throw new Error(outcome.error)
      sent.push(outcome.result)
      // Acknowledged at once: recent acknowledgements are kept too.
      if (i % 2 === 0) await sender.ack(outcome.result.messages[0].recipientId, [outcome.result.messages[0].id])
    }
  })).finally(() => { state.sending = false })
  t.ok(await pruning > 1, 'pruning ran while sending')
  await pruneRun(pruner, settings)

  const rows = await sql.query<{ id: string, content: string }>(
    "select m.body_id::text || ':' || m.recipient_id as id, b.content from messages m join message_bodies b on b.id = m.body_id")
  const stored = new Map(rows.map(r => [r.id, r.content]))
  const expected = sent.flatMap(r => r.messages.map(m => `${m.id}:${m.recipientId}`))
  t.equal(stored.size, expected.length, 'nothing else is left')
  t.ok(expected.every(id => stored.has(id)), 'every message sent meanwhile is kept, with its body')
  t.same(await sql.query("select count(*)::int as n from message_bodies where content <> 'new' and content not like 'new %'"), [{ n: 0 }],
    'the old messages, their bodies and the orphans are gone')
  t.same(await sql.query('select count(*)::int as n from message_bodies'), [{ n: sent.length }], 'one body per send')
})
