import type { FastifyInstance } from 'fastify'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import { createPostgresDriver } from '../../plugins/app/supabase/drivers/postgres.js'
import { migrate } from '../../plugins/app/supabase/migrate.js'
import { accessTokenFor, apiTokenFor, buildApp, createUser } from '../helpers/app.js'
import { freshDatabase, requireDatabaseUrl } from '../helpers/backends.js'

// A message's seq is taken at insert, but the message becomes visible at commit: two
// sends can commit in the other order. A client following nextCursor must still see
// every message accepted with a 200. Races need a real server (PGlite runs one
// statement at a time).

const skip = process.env.CI || process.env.TEST_DATABASE_URL ? false : 'TEST_DATABASE_URL is not set'

async function serverApp (t: Test) {
  const url = await freshDatabase(t, requireDatabaseUrl())
  const driver = createPostgresDriver(url, { timeoutMs: 30_000, max: 10 })
  await migrate(driver.sql)
  const app = await buildApp(t, { driver, env: { STORE_TIMEOUT_MS: '30000' } })
  return { app, url, sql: driver.sql }
}

/** Reads the inbox from `cursor` to its current end; returns the ids read and the cursor to continue from. */
async function follow (app: FastifyInstance, token: string, cursor: string | null) {
  const ids: string[] = []
  for (;;) {
    const res = await app.inject({
      method: 'GET',
      url: `/api/messages/inbox?limit=100${cursor ? `&after=${cursor}` : ''}`,
      headers: { authorization: `Bearer ${token}` }
    })
    if (res.statusCode !== 200) throw new Error(`inbox answered ${res.statusCode}: ${res.body}`)
    const page = res.json() as { messages: Array<{ id: string }>, nextCursor: string | null }
    ids.push(...page.messages.map(m => m.id))
    cursor = page.nextCursor
    if (page.messages.length < 100) return { ids, cursor }
  }
}

t.test('a send that commits after a later one is still reached by the cursor', { skip }, async t => {
  const { app, url } = await serverApp(t)
  const sender = await createUser(app)
  const reader = await createUser(app)
  const readerToken = accessTokenFor(app, reader)
  const { token: senderToken } = await apiTokenFor(app, sender)

  // Send A takes its seq first and stays uncommitted on a connection of its own.
  const other = postgres(url, { max: 1, onnotice: () => {} })
  t.after(() => other.end({ timeout: 5 }))
  let commitA!: () => void
  const aMayCommit = new Promise<void>(resolve => { commitA = resolve })
  let aSent!: (id: string) => void
  const aId = new Promise<string>(resolve => { aSent = resolve })
  const a = other.begin(async tx => {
    const [{ result }] = await tx`select gatehouse_send(p_sender => ${sender.id}, p_sender_org => ${sender.organizationId},
      p_is_admin => false, p_recipients => ${[reader.id]}, p_content => 'A', p_template_id => null,
      p_idempotency_key => null, p_request_hash => null) as result`
    aSent((result as { id: string }).id)
    await aMayCommit
  })
  const idA = await aId

  // Send B starts later, so its seq is larger, and commits first.
  const b = await app.inject({
    method: 'POST',
    url: '/api/messages/send-private',
    headers: { authorization: `Bearer ${senderToken}` },
    payload: { recipientId: reader.id, content: 'B' }
  })
  t.equal(b.statusCode, 200)
  const idB = b.json().messages[0].id as string

  const before = await follow(app, readerToken, null)
  t.notOk(before.ids.includes(idA), 'A is not visible yet')

  commitA()
  await a
  const after = await follow(app, readerToken, before.cursor)
  const seen = [...before.ids, ...after.ids]
  t.same(seen.filter(id => id === idA || id === idB), [idA, idB], 'following nextCursor reaches both, once each, the earlier transaction first')
})

t.test('concurrent senders: a reader following nextCursor sees every accepted message', { skip }, async t => {
  const { app, sql } = await serverApp(t)
  const reader = await createUser(app)
  const admin = await createUser(app, { role: 'admin' })
  await sql.query("insert into users (id) select 'crowd_' || g from generate_series(1, 1999) g")
  const crowd = Array.from({ length: 1999 }, (_, i) => `crowd_${i + 1}`)
  const { token } = await apiTokenFor(app, admin)
  const readerToken = accessTokenFor(app, reader)

  const SENDERS = 6
  const SENDS = 24
  const accepted: string[] = []
  let sending = true
  const senders = Array.from({ length: SENDERS }, async (_, s) => {
    for (let i = 0; i < SENDS; i++) {
      // One send in three goes to 2,000 recipients: a long transaction others overtake.
      const recipientIds = (s * SENDS + i) % 3 === 0 ? [reader.id, ...crowd] : [reader.id]
      const res = await app.inject({
        method: 'POST',
        url: '/api/messages/send-bulk',
        headers: { authorization: `Bearer ${token}` },
        payload: { recipientIds, content: `from ${s}, send ${i}` }
      })
      if (res.statusCode !== 200) throw new Error(`send answered ${res.statusCode}: ${res.body}`)
      accepted.push((res.json().messages as Array<{ id: string, recipientId: string }>).find(m => m.recipientId === reader.id)!.id)
    }
  })

  const seen = new Set<string>()
  const reading = (async () => {
    let cursor: string | null = null
    let polls = 0
    for (;;) {
      const done = !sending
      const page = await follow(app, readerToken, cursor)
      for (const id of page.ids) seen.add(id)
      cursor = page.cursor
      polls++
      // One more pass after the last send was answered: nothing may be left behind.
      if (done) return polls
    }
  })()
  await Promise.all(senders)
  sending = false
  const polls = await reading

  t.equal(accepted.length, SENDERS * SENDS)
  t.ok(polls > 1, 'the reader read while senders committed')
  t.same(accepted.filter(id => !seen.has(id)), [], 'every accepted message was seen')
})
