import t, { type Test } from 'tap'
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { apiTokenFor, buildApp, createUser } from '../helpers/app.js'
import { testBackends } from '../helpers/backends.js'
import { listen, Peer, wsUrl } from '../ws/helpers.js'
import { requestHash } from '../../plugins/app/messaging.js'
import type { SqlAccess } from '../../plugins/app/supabase/driver.js'
import type { User } from '../../schemas/users.js'

// A send's first transaction writes 2 rows; the next chunks 8, then 32: a 12-recipient send takes three.
const env = { SEND_FIRST_CHUNK: '2' }

function post (app: FastifyInstance, token: string, payload: unknown, headers: Record<string, string> = {}) {
  return app.inject({ method: 'POST', url: '/api/messages/send-bulk', headers: { authorization: `Bearer ${token}`, ...headers }, payload: payload as object })
}

/** A sender with an API token and `n` recipients, all in a fresh organization. */
async function team (app: FastifyInstance, n: number) {
  const user = await createUser(app, { organization_id: `org_${randomUUID()}` })
  const recipients: User[] = []
  for (let i = 0; i < n; i++) recipients.push(await createUser(app, { organization_id: user.organizationId }))
  return { user, token: (await apiTokenFor(app, user)).token, recipients, ids: recipients.map(r => r.id) }
}

/** Recipients of a send's rows, in seq order. */
async function rowsOf (sql: SqlAccess, id: string): Promise<string[]> {
  const rows = await sql.query<{ recipient_id: string }>('select recipient_id from messages where body_id = $1 order by seq', [id])
  return rows.map(r => r.recipient_id)
}

async function counts (sql: SqlAccess) {
  const [row] = await sql.query<{ bodies: number, messages: number }>(
    'select (select count(*) from message_bodies)::int as bodies, (select count(*) from messages)::int as messages')
  return row
}

/** Waits for a condition of the database (never a timing assertion: it only bounds a hang). */
async function until (what: string, check: () => Promise<boolean>) {
  for (let i = 0; !(await check()); i++) {
    if (i > 2000) throw new Error(`never happened: ${what}`)
    await sleep(10)
  }
}

/** What the send route hands the store, for arranging a send's state chunk by chunk. */
function sendInput (user: User, recipientIds: string[], content: string, idempotencyKey: string | null = null, requestHash: string | null = null) {
  return {
    senderId: user.id,
    senderOrganizationId: user.organizationId,
    senderIsAdmin: false,
    recipientIds,
    content,
    templateId: null,
    idempotencyKey,
    requestHash,
    firstChunk: 2,
    leaseSeconds: 30
  }
}

/** A recipient's socket, ready. */
const open = async (t: Test, base: string, app: FastifyInstance, user: { id: string }) =>
  await Peer.ready(t, wsUrl(base, app.tokens.issueWsTicket(user.id).token))

const idOf = (res: LightMyRequestResponse) => (res.json().messages as Array<{ id: string }>)[0].id

for (const backend of testBackends()) {
  t.test(`chunked sends on the ${backend.name} store`, { skip: backend.skip }, async t => {
    const { driver, sql } = await backend.open(t)
    const app = await buildApp(t, { driver, env })
    const base = await listen(app)
    const connect = async (t: Test, user: { id: string }) => await open(t, base, app, user)

    t.test('a send larger than the first chunk reaches everyone once, in recipient order, with one id', async t => {
      const { token, recipients, ids } = await team(app, 12)
      const first = await connect(t, recipients[0])
      const middle = await connect(t, recipients[5])
      const last = await connect(t, recipients[11])

      const res = await post(app, token, { recipientIds: ids, content: 'to twelve' })
      t.equal(res.statusCode, 200)
      t.match(res.json(), { success: true, count: 12 })
      const id = idOf(res)
      t.same(res.json().messages, ids.map(recipientId => ({ id, recipientId })), 'one id for the send, every recipient listed')
      t.same(await rowsOf(sql, id), ids, 'one row per recipient, seqs in recipient order')

      for (const peer of [first, middle, last]) {
        t.match(await peer.messages(1), [{ id, content: 'to twelve' }])
      }
      // Nothing more than that one frame: the next one is a later send.
      const marker = await post(app, token, { recipientIds: [recipients[0].id, recipients[5].id, recipients[11].id], content: 'next' })
      for (const peer of [first, middle, last]) t.match(await peer.messages(1), [{ id: idOf(marker), content: 'next' }])
    })

    t.test('an invalid recipient anywhere in a large send refuses it and writes nothing', async t => {
      const { token, ids } = await team(app, 11)
      const before = await counts(sql)
      const res = await post(app, token, { recipientIds: [...ids, 'user_unknown'], content: 'nope' })
      t.equal(res.statusCode, 422)
      t.match(res.json(), { success: false, statusCode: 422, code: 'INVALID_RECIPIENTS', details: { invalidRecipientIds: ['user_unknown'] } })
      t.same(await counts(sql), before, 'no body and no row written')
    })

    t.test('a chunked send spends one unit of its token\'s quota', async t => {
      const { user, ids } = await team(app, 12)
      const tokenId = randomUUID()
      await app.store.createApiToken({ id: tokenId, userId: user.id, createdBy: null, name: null, expiresAt: null, sendQuota: 3 })
      const res = await post(app, app.tokens.issueApi(tokenId, user.id, null), { recipientIds: ids, content: 'paid once' })
      t.equal(res.statusCode, 200)
      t.equal(res.headers['x-send-quota-remaining'], '2')
      t.match(await app.store.listApiTokens(user.id), [{ id: tokenId, sendQuotaRemaining: 2 }])
    })

    t.test('a recipient deleted between chunks gets nothing; later chunks skip rows already written', async t => {
      const { user, ids } = await team(app, 6)
      const outcome = await app.store.send(sendInput(user, ids, 'chunk by chunk'))
      if (!outcome.ok) throw new Error('refused')
      t.same(outcome.rest, { from: 2, resumed: false, claim: null })
      t.equal(outcome.result.seqs.length, 2, 'the first transaction wrote the first chunk only')
      const id = outcome.result.messages[0].id
      const chunk = { id, senderId: user.id, idempotencyKey: null, leaseSeconds: 30, claim: null }

      await app.store.deleteUser({ id: ids[4] })
      const more = await app.store.sendMore({ ...chunk, recipientIds: ids.slice(2), resumed: false })
      t.same(more.recipients, [ids[2], ids[3], ids[5]], 'the deleted user skipped')
      t.same(more.skipped, [ids[4]])
      t.ok(more.seqs[0] > outcome.result.seqs[1] && more.seqs[1] < more.seqs[2], 'seqs keep recipient order')
      const again = await app.store.sendMore({ ...chunk, recipientIds: ids, resumed: true })
      t.same(again.recipients, [], 'resumed: every row already written is skipped')
      t.same(await rowsOf(sql, id), [ids[0], ids[1], ids[2], ids[3], ids[5]])
    })

    t.test('Idempotency-Key: a send in progress answers 409; once its claim is stale a retry completes it', async t => {
      const { user, token, recipients, ids } = await team(app, 12)
      const body = { recipientIds: ids, content: 'crashed half way' }
      // What a process that died during the send leaves: the first chunk and part of the second.
      const outcome = await app.store.send(sendInput(user, ids, body.content, 'k-crash', requestHash('send-bulk', body)))
      if (!outcome.ok) throw new Error('refused')
      const id = outcome.result.messages[0].id
      const chunk = { id, senderId: user.id, idempotencyKey: 'k-crash', leaseSeconds: 30, claim: outcome.rest?.claim ?? null, resumed: false }
      t.match(chunk.claim, /^[0-9a-f-]{36}$/, 'a chunked send with a key holds a claim')
      await app.store.sendMore({ ...chunk, recipientIds: ids.slice(2, 5) })
      t.same(await rowsOf(sql, id), ids.slice(0, 5))

      const busy = await post(app, token, body, { 'idempotency-key': 'k-crash' })
      t.equal(busy.statusCode, 409)
      t.match(busy.json(), { success: false, statusCode: 409, code: 'IDEMPOTENCY_KEY_IN_USE', details: { retryAfterSeconds: Number } })
      t.ok(Number(busy.headers['retry-after']) >= 1 && Number(busy.headers['retry-after']) <= 30, 'Retry-After within the lease')
      t.same(await rowsOf(sql, id), ids.slice(0, 5), 'the 409 wrote nothing')

      const mismatch = await post(app, token, { ...body, content: 'something else' }, { 'idempotency-key': 'k-crash' })
      t.equal(mismatch.statusCode, 422)
      t.equal(mismatch.json().code, 'IDEMPOTENCY_KEY_REUSED')

      // The lease runs out (30 s after the last chunk of the dead process).
      await sql.query("update idempotency_keys set lease_until = now() - interval '1 second' where key = 'k-crash'")
      const waiting = await connect(t, recipients[8])
      const done = await post(app, token, body, { 'idempotency-key': 'k-crash' })
      t.equal(done.statusCode, 200)
      t.notOk(done.headers['idempotent-replayed'])
      t.same(done.json(), { success: true, count: 12, messages: ids.map(recipientId => ({ id, recipientId })) }, 'the full result, the first id')
      t.same(await rowsOf(sql, id), ids, 'the missing rows written, none twice')
      t.match(await waiting.messages(1), [{ id, content: body.content }], 'a recipient of the missing part gets its frame')

      const replay = await post(app, token, body, { 'idempotency-key': 'k-crash' })
      t.equal(replay.statusCode, 200)
      t.equal(replay.headers['idempotent-replayed'], 'true')
      t.same(replay.json(), done.json())
      t.same(await rowsOf(sql, id), ids, 'a replay writes nothing')

      // The process taken over was only slow: its next chunk finds its claim gone and writes no row twice.
      t.same((await app.store.sendMore({ ...chunk, recipientIds: ids.slice(5) })).recipients, [])
      t.same(await rowsOf(sql, id), ids)
    })

    t.test('Idempotency-Key: a chunked send replays, a deleted recipient stays out of the replay', async t => {
      const { token, ids } = await team(app, 12)
      await app.store.deleteUser({ id: ids[3] })
      const refused = await post(app, token, { recipientIds: ids, content: 'x' }, { 'idempotency-key': 'k-done' })
      t.equal(refused.statusCode, 422, 'deleted before the send: refused as before')

      const body = { recipientIds: ids.filter((_, i) => i !== 3), content: 'eleven' }
      const first = await post(app, token, body, { 'idempotency-key': 'k-done' })
      t.equal(first.statusCode, 200)
      const replay = await post(app, token, body, { 'idempotency-key': 'k-done' })
      t.equal(replay.headers['idempotent-replayed'], 'true')
      t.same(replay.json(), first.json())
      t.same(await rowsOf(sql, idOf(first)), body.recipientIds)
    })

    // Only with a second connection to the same database can something hold a lock beside the send.
    if (backend.name !== 'pglite' && process.env.TEST_DATABASE_URL) {
      t.test('the first chunk is delivered before the last one commits', async t => {
        const { user, token, recipients, ids } = await team(app, 12)
        const first = await connect(t, recipients[0])
        const last = await connect(t, recipients[11])
        const waitForKey = await holds(sql).key(user.id, 'k-live')
        let answered = false
        const response = post(app, token, { recipientIds: ids, content: 'live' }, { 'idempotency-key': 'k-live' })
          .then(res => { answered = true; return res })
        const release = await waitForKey()

        // The first chunk's recipient has its frame while the later chunks cannot commit.
        const [frame] = await first.messages(1)
        t.match(frame, { content: 'live' })
        t.notOk(answered, 'no answer before every chunk committed')
        t.same(await sql.query('select 1 from messages where recipient_id = $1', [ids[11]]), [], 'the last chunk is not written yet')
        await app.store.deleteUser({ id: ids[10] })

        await release()
        const res = await response
        t.equal(res.statusCode, 200)
        t.equal(res.json().count, 11, 'the recipient deleted meanwhile is not counted')
        t.same(await rowsOf(sql, frame.id), ids.filter((_, i) => i !== 10))
        t.match(await last.messages(1), [{ id: frame.id, content: 'live' }])
      })
    }

    if (backend.name === 'postgres') {
      t.test('a chunk that fails answers 503 and frees its key: the retry completes the send', async t => {
        const { user, token, recipients, ids } = await team(app, 12)
        const first = await connect(t, recipients[0])
        const last = await connect(t, recipients[11])
        const body = { recipientIds: ids, content: 'interrupted' }

        const waitForKey = await holds(sql).key(user.id, 'k-fail')
        const response = post(app, token, body, { 'idempotency-key': 'k-fail' })
        const release = await waitForKey()
        const [frame] = await first.messages(1)
        // The second chunk waits for the lock: its connection is lost.
        await until('the second chunk waits', async () => (await sql.query<{ n: number }>(ADVISORY_WAITERS + " and mode = 'ShareLock'"))[0].n > 0)
        await sql.query("select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and query like '%gatehouse\\_send\\_more(%' and pid <> pg_backend_pid()")
        const failed = await response
        t.equal(failed.statusCode, 503)
        t.match(failed.json(), { success: false, statusCode: 503, code: 'SERVICE_UNAVAILABLE' })
        t.same(await rowsOf(sql, frame.id), ids.slice(0, 2), 'the first chunk stays stored (and was delivered), nothing after it')
        await release()

        const retry = await post(app, token, body, { 'idempotency-key': 'k-fail' })
        t.equal(retry.statusCode, 200, 'no 409: the failed send gave up its claim')
        t.same(retry.json(), { success: true, count: 12, messages: ids.map(recipientId => ({ id: frame.id, recipientId })) })
        t.same(await rowsOf(sql, frame.id), ids, 'completed, no row twice')
        t.match(await last.messages(1), [{ id: frame.id, content: 'interrupted' }])
      })
    }
  })
}

/**
 * Holds what a chunked send needs from other connections of its database: `key` the
 * send's Idempotency-Key row, uncommitted, so its first transaction waits; then
 * `lock` queues an exclusive hold of the lock each chunk takes shared, granted as the
 * first chunk commits, so no later chunk can commit until `release`.
 */
const ADVISORY_WAITERS = "select count(*)::int as n from pg_locks where locktype = 'advisory' and objid = 727275 and not granted " +
  'and database = (select oid from pg_database where datname = current_database())'

function holds (sql: SqlAccess) {
  const releases: Array<() => void> = []
  /** Runs `work` in a transaction kept open (then rolled back) until released; `ended` settles after. */
  const held = async (work: (tx: SqlAccess) => Promise<void>) => {
    let started!: () => void
    const ready = new Promise<void>(resolve => { started = resolve })
    const ended = sql.transaction(async tx => {
      await work(tx)
      started()
      await new Promise<void>(resolve => releases.push(resolve))
      throw new Error('rolled back')
    }).catch(() => {})
    return { ready, ended }
  }
  const count = async (query: string) => (await sql.query<{ n: number }>(query))[0].n
  return {
    async key (callerId: string, key: string) {
      const keyHeld = await held(async tx => { await tx.query('insert into idempotency_keys (caller_id, key, request_hash) values ($1, $2, \'x\')', [callerId, key]) })
      await keyHeld.ready
      return async () => {
        await until('the first transaction waits for the key', async () => await count(
          "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query like '%gatehouse\\_send(%' and pid <> pg_backend_pid()") > 0)
        const lockHeld = await held(async tx => { await tx.query('select pg_advisory_xact_lock(727275)') })
        await until('the exclusive lock is queued', async () => await count(
          ADVISORY_WAITERS + " and mode = 'ExclusiveLock'") > 0)
        releases.shift()!()
        await keyHeld.ended
        await lockHeld.ready
        return async () => {
          releases.shift()!()
          await lockHeld.ended
        }
      }
    }
  }
}
