import { copyFile, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import type { RpcDriver, SqlAccess } from '../../plugins/app/supabase/driver.js'
import { createPgliteDriver } from '../../plugins/app/supabase/drivers/pglite.js'
import { createPostgresDriver } from '../../plugins/app/supabase/drivers/postgres.js'
import { listMigrations, migrate } from '../../plugins/app/supabase/migrate.js'
import { Store } from '../../plugins/app/supabase/store.js'
import { pruneRun } from '../../plugins/app/retention.js'
import type { SendInput } from '../../schemas/messages.js'
import { freshDatabase, requireDatabaseUrl } from '../helpers/backends.js'

const CHEAP_ROWS_MIGRATION = '20261122010000'

/** Migrates up to, not including, the migration that gave a send's messages one id. */
async function beforeCheapRows (t: Test, sql: SqlAccess): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-migrations-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  for (const m of await listMigrations()) if (m.version < CHEAP_ROWS_MIGRATION) await copyFile(m.file, join(dir, basename(m.file)))
  await migrate(sql, dir)
}

const databases: Array<{ name: string, skip: string | false, open (t: Test): Promise<{ driver: RpcDriver, sql: SqlAccess, url?: string }> }> = [
  {
    name: 'pglite',
    skip: false,
    async open (t) {
      const driver = await createPgliteDriver(null)
      t.after(() => driver.close())
      return { driver, sql: driver.sql }
    }
  },
  {
    name: 'postgres',
    skip: process.env.CI || process.env.TEST_DATABASE_URL ? false : 'TEST_DATABASE_URL is not set',
    async open (t) {
      const url = await freshDatabase(t, requireDatabaseUrl())
      const driver = createPostgresDriver(url, { timeoutMs: 10_000 })
      t.after(() => driver.close())
      return { driver, sql: driver.sql, url }
    }
  }
]

const send = (recipientIds: string[], extra: Partial<SendInput> = {}): SendInput => ({
  senderId: 'sender',
  senderOrganizationId: 'org',
  senderIsAdmin: false,
  recipientIds,
  content: 'hello',
  templateId: null,
  idempotencyKey: null,
  requestHash: null,
  ...extra
})

for (const database of databases) {
  t.test(`messages stored before one id per send keep working on ${database.name}`, { skip: database.skip }, async t => {
    const { driver, sql } = await database.open(t)
    await beforeCheapRows(t, sql)
    await sql.query("insert into users (id, organization_id) values ('sender', 'org'), ('a', 'org'), ('b', 'org')")
    const store = new Store(driver, 10_000)
    const keyed = send(['a', 'b'], { idempotencyKey: 'k1', requestHash: 'h1' })
    // As a server of that version called it (this Store passes later parameters too).
    const [{ old }] = await sql.query<{ old: { messages: Array<{ id: string, recipientId: string }> } }>(
      "select gatehouse_send('sender', 'org', false, array['a', 'b'], 'hello', null, 'k1', 'h1') as old")
    const [oldA, oldB] = old.messages.map(m => m.id)
    t.not(oldA, oldB, 'before: one id per message')

    const fromHere = (await listMigrations()).map(m => m.version).filter(version => version >= CHEAP_ROWS_MIGRATION)
    t.same(await migrate(sql), fromHere, 'the migration applies, with the later ones')

    const replay = await store.send(keyed)
    t.match(replay, { ok: true, result: { replayed: true, count: 2, seqs: [] } })
    t.same(replay.ok && replay.result.messages.map(m => [m.id, m.recipientId]), [[oldA, 'a'], [oldB, 'b']], 'a retry answers the ids first given')

    const fresh = await store.send(send(['b', 'a']))
    if (!fresh.ok) throw new Error('new send refused')
    const newId = fresh.result.messages[0].id
    t.same(fresh.result.messages, [{ id: newId, recipientId: 'b' }, { id: newId, recipientId: 'a' }], 'after: the send\'s id for every recipient')

    t.same((await store.pendingMessages('a', 0, 10)).map(m => m.id), [oldA, newId], 'pending lists old and new ids')
    t.equal(await store.ack('a', [newId, oldB]), 1, 'an id acks only its own recipient\'s message')
    t.equal(await store.ack('a', [oldA]), 1, 'an old id still acks its message')
    t.same(await store.pendingMessages('a', 0, 10), [], 'both acknowledged')
    t.same((await store.pendingMessages('b', 0, 10)).map(m => m.id), [oldB, newId], 'b\'s messages untouched')
    t.same((await store.inbox('b', null, 10)).map(m => [m.id, m.acked]), [[oldB, false], [newId, false]])

    const replayAfter = await store.send(send(['a', 'b'], { idempotencyKey: 'k2', requestHash: 'h2' }))
    const replayAgain = await store.send(send(['a', 'b'], { idempotencyKey: 'k2', requestHash: 'h2' }))
    t.same(replayAgain.ok && replayAgain.result.messages, replayAfter.ok && replayAfter.result.messages, 'a key used after the migration replays the same ids')
    t.same((await store.inbox('a', null, 10)).length, 3, 'and stores nothing twice')

    // The foreign keys are gone; deleting a body or a user still takes its messages.
    await sql.query('delete from message_bodies where id = $1', [newId])
    t.same((await store.inbox('b', null, 10)).map(m => m.id), [oldB, ...(replayAfter.ok ? [replayAfter.result.messages[0].id] : [])], 'a deleted body takes its messages')
    await store.deleteUser({ id: 'b' })
    // The user is refused at once; their inbox, then their row, go in pruning batches.
    await pruneRun(store, { ackedTtl: 0, unackedTtl: 0, idempotencyTtl: 86_400, batch: 1_000, everyMs: 60_000 })
    const left = await sql.query<{ n: number }>("select count(*)::int as n from messages where recipient_id = 'b'")
    t.equal(left[0].n, 0, 'a deleted user takes their messages')
  })
}

t.test('a user deleted while a send to them is in flight keeps no message (postgres)', { skip: databases[1].skip }, async t => {
  const { sql, url } = await databases[1].open(t)
  await migrate(sql)
  await sql.query("insert into users (id, organization_id) values ('sender', 'org'), ('gone', 'org'), ('stays', 'org')")
  const sender = postgres(url as string, { max: 1, onnotice: () => {} })
  const deleter = postgres(url as string, { max: 1, onnotice: () => {} })
  t.after(() => Promise.all([sender.end(), deleter.end()]))

  // The send has checked its recipients and written, but not committed, when the delete starts.
  let commit: () => void = () => {}
  let written: () => void = () => {}
  const committed = new Promise<void>(resolve => { commit = resolve })
  const wrote = new Promise<void>(resolve => { written = resolve })
  const sending = sender.begin(async tx => {
    await tx`select gatehouse_send('sender', 'org', false, array['gone', 'stays'], 'hi', null, null, null)`
    written()
    await committed
  })
  await wrote
  const deleting = deleter`delete from users where id = 'gone'`.then(() => 'deleted')
  const early = await Promise.race([deleting, new Promise(resolve => setTimeout(() => resolve('waiting'), 300))])
  t.equal(early, 'waiting', 'the delete waits for the send in flight')
  commit()
  await sending
  t.equal(await deleting, 'deleted')
  const rows = await sql.query<{ recipient_id: string }>('select recipient_id from messages order by recipient_id')
  t.same(rows.map(r => r.recipient_id), ['stays'], 'no message is left for the deleted user')
})
