import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { createEmbeddedDriver } from '../../plugins/app/supabase/drivers/embedded.js'
import { apiTokenFor, buildApp, createUser } from '../helpers/app.js'

// The embedded store runs in a process of its own: a query it is stuck in must not
// stop the service, the store timeout must hold although PGlite cannot cancel a
// statement, and a store process that dies must come back on its own.

// Long enough for a store process that has just started to answer on a loaded machine.
const STORE_TIMEOUT_MS = 2000

async function dataDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-embedded-test-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function setup (t: Test, timeoutMs: number) {
  const restarts: string[] = []
  const driver = await createEmbeddedDriver({ dataDir: await dataDir(t), timeoutMs, onRestart: reason => restarts.push(reason) })
  const app = await buildApp(t, { driver, env: { STORE_TIMEOUT_MS: String(timeoutMs) } })
  const sender = await createUser(app)
  const recipient = await createUser(app)
  const { token } = await apiTokenFor(app, sender)
  const send = (content: string, key: string) => app.inject({
    method: 'POST',
    url: '/api/messages/send-private',
    headers: { authorization: `Bearer ${token}`, 'idempotency-key': key },
    payload: { recipientId: recipient.id, content }
  })
  const inbox = async () => (await app.store.inbox(recipient.id, null, 100)).map(m => m.content)
  const ready = async () => {
    for (let i = 0; i < 600; i++) {
      if ((await app.inject('/ready')).statusCode === 200) return
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    throw new Error('the store never came back')
  }
  return { driver, app, restarts, send, inbox, ready }
}

t.test('a send stuck in the store past STORE_TIMEOUT_MS answers 503, the service keeps answering, nothing is stored, and the retry counts', async t => {
  const { driver, app, restarts, send, inbox, ready } = await setup(t, STORE_TIMEOUT_MS)
  // Every send now takes far longer than the timeout inside the store.
  await driver.sql.exec(`
    create function slow_send() returns trigger language plpgsql as $$ begin perform pg_sleep(30); return new; end $$;
    create trigger slow_send before insert on message_bodies for each row execute function slow_send();`)
  const firstPid = driver.pid

  const pending = send('hello', 'stuck-send')
  // Meanwhile the service itself answers at once: the store's work is not on its event loop.
  await new Promise(resolve => setTimeout(resolve, 500))
  const health = await app.inject('/health')
  t.equal(health.statusCode, 200, '/health answers while the store is busy')

  const res = await pending
  t.equal(res.statusCode, 503)
  t.match(res.json(), { success: false, statusCode: 503, code: 'SERVICE_UNAVAILABLE' })

  await ready()
  t.not(driver.pid, firstPid, 'the stuck store process was replaced')
  t.match(restarts, [/embedded store process ended/])
  t.same(await inbox(), [], 'the cancelled send left nothing behind')

  await driver.sql.exec('drop trigger slow_send on message_bodies')
  const retry = await send('hello', 'stuck-send')
  t.equal(retry.statusCode, 200)
  t.notOk(retry.headers['idempotent-replayed'], 'the retry is the first send that counted')
  t.same(await inbox(), ['hello'])
})

t.test('a store process that dies is restarted: /ready fails until it is back, and the data is kept', async t => {
  const { driver, app, send, inbox, ready } = await setup(t, 5_000)
  t.equal((await send('before', 'k1')).statusCode, 200)

  const pid = driver.pid
  t.ok(pid)
  process.kill(pid!, 'SIGKILL')
  const down = await app.inject('/ready')
  t.equal(down.statusCode, 503, 'not ready while the store is down')
  t.match(down.json(), { success: false, statusCode: 503 })

  await ready()
  t.not(driver.pid, pid)
  t.same(await inbox(), ['before'], 'what was stored before the crash is still there')
  t.equal((await send('after', 'k2')).statusCode, 200)
  t.same((await inbox()).sort(), ['after', 'before'])
})
