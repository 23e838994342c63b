import type { FastifyInstance } from 'fastify'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import { createPostgresDriver } from '../../plugins/app/supabase/drivers/postgres.js'
import { migrate } from '../../plugins/app/supabase/migrate.js'
import { apiTokenFor, buildApp, createUser } from '../helpers/app.js'
import { freshDatabase, requireDatabaseUrl } from '../helpers/backends.js'

// A send the store cannot finish within STORE_TIMEOUT_MS answers 503. That 503 must
// mean "nothing was stored": otherwise the send commits behind the client's back, a
// retry with the same Idempotency-Key only replays it, and it is never delivered live.

const skip = process.env.CI || process.env.TEST_DATABASE_URL ? false : 'TEST_DATABASE_URL is not set'
const STORE_TIMEOUT_MS = 500

async function setup (t: Test, max: number) {
  const url = await freshDatabase(t, requireDatabaseUrl())
  const driver = createPostgresDriver(url, { timeoutMs: STORE_TIMEOUT_MS, max })
  await migrate(driver.sql)
  const app = await buildApp(t, { driver, env: { STORE_TIMEOUT_MS: String(STORE_TIMEOUT_MS) } })
  const sender = await createUser(app)
  const recipient = await createUser(app)
  const { token } = await apiTokenFor(app, sender)
  const send = (content: string, key: string) => app.inject({
    method: 'POST',
    url: '/api/messages/send-private',
    headers: { authorization: `Bearer ${token}`, 'idempotency-key': key },
    payload: { recipientId: recipient.id, content }
  })
  return { url, driver, app, recipient, send }
}

async function inboxContents (app: FastifyInstance, user: { id: string }) {
  return (await app.store.inbox(user.id, null, 100)).map(m => m.content)
}

t.test('a send blocked past the timeout is cancelled: 503, nothing stored, and a retry sends it once', { skip }, async t => {
  const { url, app, recipient, send } = await setup(t, 4)
  const stored = async () => (await app.store.inbox(recipient.id, null, 100)).length

  // Another connection locks the table every send writes, so the send waits past the timeout.
  const locker = postgres(url, { max: 1, onnotice: () => {} })
  t.after(() => locker.end({ timeout: 5 }))
  let unlock!: () => void
  let locked!: () => void
  const isLocked = new Promise<void>(resolve => { locked = resolve })
  const held = locker.begin(async tx => {
    await tx`lock table message_bodies in exclusive mode`
    locked()
    await new Promise<void>(resolve => { unlock = resolve })
  })
  await isLocked

  const first = await send('hello', 'retry-me')
  t.equal(first.statusCode, 503)
  t.match(first.json(), { success: false, statusCode: 503, code: 'SERVICE_UNAVAILABLE' })
  t.ok(first.headers['retry-after'], 'with Retry-After')

  unlock()
  await held
  t.equal(await stored(), 0, 'once the lock is gone, nothing of the timed-out send is stored')
  t.same(await locker`select key from idempotency_keys`, [], 'nor its idempotency key')

  const retry = await send('hello', 'retry-me')
  t.equal(retry.statusCode, 200)
  t.notOk(retry.headers['idempotent-replayed'], 'the retry is the first send that counted')
  t.same(await inboxContents(app, recipient), ['hello'], 'stored exactly once')
  const again = await send('hello', 'retry-me')
  t.equal(again.headers['idempotent-replayed'], 'true')
  t.same(again.json().messages, retry.json().messages)
  t.same(await inboxContents(app, recipient), ['hello'], 'still once')
})

t.test('a call still waiting for a connection at the timeout is withdrawn and never runs', { skip }, async t => {
  const { driver, app, recipient, send } = await setup(t, 1)

  // The only connection is busy with something slower than the timeout.
  let release!: () => void
  let busy!: () => void
  const isBusy = new Promise<void>(resolve => { busy = resolve })
  const occupied = driver.sql.transaction(async () => {
    busy()
    await new Promise<void>(resolve => { release = resolve })
  })
  await isBusy

  const res = await send('queued', 'queued-key')
  t.equal(res.statusCode, 503)
  release()
  await occupied

  t.same(await inboxContents(app, recipient), [], 'the withdrawn send never ran')
  const retry = await send('queued', 'queued-key')
  t.equal(retry.statusCode, 200)
  t.notOk(retry.headers['idempotent-replayed'])
  t.same(await inboxContents(app, recipient), ['queued'])
})
