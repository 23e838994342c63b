import t from 'tap'
import { apiTokenFor, buildApp, createUser } from '../helpers/app.js'
import { buildDist, eventually, privatePostgres, privateRedis, startGatehouse } from '../helpers/processes.js'
import { migrate } from '../../plugins/app/supabase/migrate.js'
import { createPostgresDriver } from '../../plugins/app/supabase/drivers/postgres.js'
import { Peer, wsUrl } from '../ws/helpers.js'

/*
 * A real gatehouse process on a Postgres cluster of this test, stopped and started
 * again under it: bounded 503s while it is down, then service again without a restart.
 */
t.test('Postgres stopped and restarted under a running process', async t => {
  const dist = await buildDist(t)
  const postgres = await privatePostgres(t)
  const migrator = createPostgresDriver(postgres.url, { timeoutMs: 10_000, max: 1 })
  await migrate(migrator.sql)
  await migrator.close()
  const redis = await privateRedis(t)
  const server = await startGatehouse(t, dist, { DATABASE_URL: postgres.url, REDIS_URL: redis.url, STORE_TIMEOUT_MS: '1000', RATE_LIMIT_MAX: '100000' })

  const seeder = await buildApp(t, { store: { kind: 'postgres', url: postgres.url } })
  const [sender, recipient] = [await createUser(seeder), await createUser(seeder)]
  const { token } = await apiTokenFor(seeder, sender)
  const send = (content: string) => fetch(`${server.url}/api/messages/send-private`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ recipientId: recipient.id, content })
  })
  const before = await send('before')
  t.equal(before.status, 200)

  await postgres.stop()
  const during = await send('during')
  t.equal(during.status, 503, 'a bounded 503, not a hang')
  t.match(await during.json(), { success: false, statusCode: 503, code: 'SERVICE_UNAVAILABLE' })
  t.ok(during.headers.get('retry-after'), 'with Retry-After')
  t.equal((await fetch(`${server.url}/ready`)).status, 503)

  await postgres.start()
  await eventually('ready again', async () => (await fetch(`${server.url}/ready`)).status === 200)
  const after = await send('after')
  t.equal(after.status, 200, 'sends work again without a restart')
  const afterId = (await after.json()).messages[0].id
  const peer = await Peer.ready(t, wsUrl(server.url, seeder.tokens.issueWsTicket(recipient.id).token))
  const ids = (await peer.messages(2)).map(m => m.id)
  t.same(ids, [(await before.json()).messages[0].id, afterId], 'what was accepted is there; what was refused is not')
  t.notOk(server.output.some(line => line.includes(token)), 'the token is not in the logs')
})
