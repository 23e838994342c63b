import { createServer as createHttpServer } from 'node:http'
import { createServer, type Server, type Socket } from 'node:net'
import t, { type Test } from 'tap'
import { DependencyUnavailableError } from '../../lib/errors.js'
import type { RpcDriver } from '../../plugins/app/supabase/driver.js'
import { createPostgresDriver } from '../../plugins/app/supabase/drivers/postgres.js'
import { createSupabaseDriver, SupabaseRpcError } from '../../plugins/app/supabase/drivers/supabase.js'
import { Store } from '../../plugins/app/supabase/store.js'
import { buildApp, freshPglite } from '../helpers/app.js'
import { SERVICE_ROLE_KEY } from '../helpers/backends.js'
import { startPostgrest } from '../helpers/postgrest.js'

// Small, so a hung dependency is given up on quickly; the test timeout catches a hang.
const STORE_TIMEOUT_MS = 300
const HANG_GUARD = { timeout: 60_000 }

/** A port nothing listens on. */
async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise(resolve => server.close(resolve))
  return port
}

/** A server that accepts connections and never answers: a hung database or gateway. */
async function hungPort (t: Test): Promise<number> {
  const sockets = new Set<Socket>()
  const server: Server = createServer(socket => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.after(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise(resolve => server.close(resolve))
  })
  return (server.address() as { port: number }).port
}

function storeOn (t: Test, driver: RpcDriver): Store {
  t.after(() => driver.close())
  return new Store(driver, STORE_TIMEOUT_MS)
}

async function assertUnavailable (t: Test, store: Store) {
  await t.rejects(store.ping(), DependencyUnavailableError)
  await t.rejects(store.getUser('someone'), { statusCode: 503, code: 'SERVICE_UNAVAILABLE', message: 'Storage is unavailable, try again later' })
  await t.rejects(store.send({
    senderId: 'a', senderOrganizationId: null, senderIsAdmin: false, recipientIds: ['a'], content: 'x', templateId: null, idempotencyKey: null, requestHash: null
  }), DependencyUnavailableError)
}

t.test('pglite: a closed embedded store is unavailable', HANG_GUARD, async t => {
  const driver = await freshPglite()
  const store = storeOn(t, driver)
  await t.resolves(store.ping(), 'answers while open')
  await driver.close()
  await assertUnavailable(t, store)
})

t.test('postgres: nothing listening is unavailable', HANG_GUARD, async t => {
  const store = storeOn(t, createPostgresDriver(`postgres://gatehouse:gatehouse@127.0.0.1:${await closedPort()}/gatehouse`, { timeoutMs: STORE_TIMEOUT_MS }))
  await assertUnavailable(t, store)
})

t.test('postgres: a server that never answers is unavailable after the timeout', HANG_GUARD, async t => {
  const store = storeOn(t, createPostgresDriver(`postgres://gatehouse:gatehouse@127.0.0.1:${await hungPort(t)}/gatehouse`, { timeoutMs: STORE_TIMEOUT_MS }))
  await assertUnavailable(t, store)
})

t.test('supabase: nothing listening is unavailable', HANG_GUARD, async t => {
  const store = storeOn(t, createSupabaseDriver(`http://127.0.0.1:${await closedPort()}`, SERVICE_ROLE_KEY))
  await assertUnavailable(t, store)
})

t.test('supabase: a gateway that never answers is unavailable after the timeout', HANG_GUARD, async t => {
  const store = storeOn(t, createSupabaseDriver(`http://127.0.0.1:${await hungPort(t)}`, SERVICE_ROLE_KEY))
  await assertUnavailable(t, store)
})

t.test('supabase: PostgREST up with its database down is unavailable', HANG_GUARD, async t => {
  const database = createPostgresDriver(`postgres://gatehouse:gatehouse@127.0.0.1:${await closedPort()}/gatehouse`, { timeoutMs: STORE_TIMEOUT_MS })
  t.after(() => database.close())
  const postgrest = await startPostgrest(database.sql)
  t.after(() => postgrest.close())
  const store = storeOn(t, createSupabaseDriver(postgrest.url, SERVICE_ROLE_KEY))
  await assertUnavailable(t, store)
})

t.test('postgres: the first refused connection is reported with its cause', HANG_GUARD, async t => {
  const store = storeOn(t, createPostgresDriver(`postgres://gatehouse:gatehouse@127.0.0.1:${await closedPort()}/gatehouse`, { timeoutMs: STORE_TIMEOUT_MS }))
  const error = await store.ping().then(() => null, (e: unknown) => e as Error)
  t.ok(error instanceof DependencyUnavailableError)
  t.match(error?.cause, { code: 'ECONNREFUSED' }, 'kept for the logs')
})

t.test('supabase: the endpoint stopped after it answered', HANG_GUARD, async t => {
  const database = await freshPglite({ supabase: true })
  t.after(() => database.close())
  const postgrest = await startPostgrest(database.sql!)
  const store = storeOn(t, createSupabaseDriver(postgrest.url, SERVICE_ROLE_KEY))
  await t.resolves(store.ping(), 'answers while up')
  await postgrest.close()
  await assertUnavailable(t, store)
})

t.test('supabase: a gateway answering 502, 503 or 504 with an HTML page is unavailable', HANG_GUARD, async t => {
  for (const status of [502, 503, 504]) {
    const gateway = createHttpServer((req, res) => {
      req.resume()
      res.writeHead(status, { 'content-type': 'text/html' }).end('<html><body>upstream unavailable</body></html>')
    })
    await new Promise<void>(resolve => gateway.listen(0, '127.0.0.1', resolve))
    t.after(() => new Promise(resolve => gateway.close(resolve)))
    const store = storeOn(t, createSupabaseDriver(`http://127.0.0.1:${(gateway.address() as { port: number }).port}`, SERVICE_ROLE_KEY))
    await t.rejects(store.ping(), DependencyUnavailableError, `status ${status}`)
  }
})

t.test('supabase: a wrong service role key is a configuration error, not an outage', HANG_GUARD, async t => {
  const database = await freshPglite({ supabase: true })
  t.after(() => database.close())
  const postgrest = await startPostgrest(database.sql!)
  t.after(() => postgrest.close())
  const error = await storeOn(t, createSupabaseDriver(postgrest.url, 'not-the-key')).ping().then(() => null, (e: unknown) => e as Error)
  t.notOk(error instanceof DependencyUnavailableError)
  t.ok(error instanceof SupabaseRpcError)
  t.match(error, { status: 401 })
})

/** What a client sees: the readiness probe answers 503 in the error envelope, with Retry-After. */
for (const [name, driver] of [
  ['postgres', async () => createPostgresDriver(`postgres://gatehouse:gatehouse@127.0.0.1:${await closedPort()}/gatehouse`, { timeoutMs: STORE_TIMEOUT_MS })],
  ['supabase', async () => createSupabaseDriver(`http://127.0.0.1:${await closedPort()}`, SERVICE_ROLE_KEY)]
] as const) {
  t.test(`${name}: the app answers 503 while the store is down`, HANG_GUARD, async t => {
    const app = await buildApp(t, { driver: await driver(), env: { STORE_TIMEOUT_MS: String(STORE_TIMEOUT_MS) } })
    const res = await app.inject({ method: 'GET', url: '/ready' })
    t.equal(res.statusCode, 503)
    t.match(res.json(), { success: false, statusCode: 503, code: 'SERVICE_UNAVAILABLE', message: 'Storage is unavailable, try again later' })
    t.ok(res.headers['retry-after'], 'tells the client when to retry')
  })
}
