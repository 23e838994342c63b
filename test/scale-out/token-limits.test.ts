import { randomBytes } from 'node:crypto'
import t from 'tap'
import { accessTokenFor, buildApp, createUser } from '../helpers/app.js'
import { freshDatabase, requireDatabaseUrl } from '../helpers/backends.js'
import { buildDist, privateRedis, startGatehouse } from '../helpers/processes.js'
import { migrate } from '../../plugins/app/supabase/migrate.js'
import { createPostgresDriver } from '../../plugins/app/supabase/drivers/postgres.js'

/*
 * Per-token send limits held by two real gatehouse processes on one Postgres
 * database and one redis-server of this test, every request sent at once and
 * spread over both, as a load balancer without stickiness would.
 */
t.test('send limits across two processes on one Postgres and one Redis', async t => {
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
    RATE_LIMIT_MAX: '100000'
  }
  const seeder = await buildApp(t, { store: { kind: 'postgres', url: database } })
  const processes = await Promise.all([startGatehouse(t, dist, env), startGatehouse(t, dist, env)])

  const admin = await createUser(seeder, { role: 'admin' })
  const sender = await createUser(seeder, { organization_id: 'org_limits' })
  const recipient = await createUser(seeder, { organization_id: 'org_limits' })
  const adminToken = accessTokenFor(seeder, admin)

  async function call (base: string, path: string, token: string, body: unknown) {
    const res = await fetch(base + path, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body)
    })
    return { status: res.status, headers: res.headers, body: await res.json() }
  }
  /** Minted through the admin route of the first process, as an administrator would. */
  async function mint (limits: Record<string, number>) {
    const res = await call(processes[0].url, '/api/admin/tokens', adminToken, { userId: sender.id, ...limits })
    t.equal(res.status, 201, 'minted')
    return res.body.token as string
  }
  /** `count` sends at once, alternating between the processes. */
  const sendAll = (token: string, count: number) => Promise.all(Array.from({ length: count }, (_, i) =>
    call(processes[i % 2].url, '/api/messages/send-private', token, { recipientId: recipient.id, content: `send ${i}` })))
  const inboxCount = async () => {
    const res = await fetch(`${processes[1].url}/api/messages/inbox?limit=100`, { headers: { authorization: `Bearer ${accessTokenFor(seeder, recipient)}` } })
    return ((await res.json()).messages as unknown[]).length
  }

  t.test('a quota of 10 under 30 concurrent sends: exactly 10 are accepted and stored', async t => {
    const token = await mint({ sendQuota: 10 })
    const results = await sendAll(token, 30)
    const accepted = results.filter(r => r.status === 200)
    const refused = results.filter(r => r.status === 429)
    t.equal(accepted.length, 10, 'exactly the quota')
    t.equal(refused.length, 20, 'every other send refused')
    t.ok(refused.every(r => r.body.code === 'QUOTA_EXHAUSTED'), 'with QUOTA_EXHAUSTED')
    t.same(accepted.map(r => Number(r.headers.get('x-send-quota-remaining'))).sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
      'each accepted send saw its own unit taken')
    t.equal(await inboxCount(), 10, 'the recipient has exactly 10 messages')
    const introspected = await call(processes[1].url, '/api/tokens/introspect', adminToken, { token })
    t.match(introspected.body, { active: true, send_quota: 10, send_quota_remaining: 0 })
  })

  t.test('a limit of 5 a minute is one budget for both processes, counted in Redis', async t => {
    const token = await mint({ sendsPerMinute: 5 })
    const before = await inboxCount()
    const results = await sendAll(token, 12)
    t.equal(results.filter(r => r.status === 200).length, 5, 'five sends in the minute, whichever process took them')
    const refused = results.filter(r => r.status === 429)
    t.equal(refused.length, 7)
    t.ok(refused.every(r => r.body.code === 'RATE_LIMITED' && Number(r.headers.get('retry-after')) > 0), 'RATE_LIMITED with Retry-After')
    t.equal(await inboxCount(), before + 5)
  })
})
