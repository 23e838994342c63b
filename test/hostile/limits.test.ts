import t, { type Test } from 'tap'
import { ConfigError, loadConfig } from '../../lib/config.js'
import { buildApp } from '../helpers/app.js'
import { clerkIssuer } from '../helpers/clerk.js'

const clerk = clerkIssuer()

t.test("a route's own limit applies on top of the global one, failed authentication included", async t => {
  const app = await buildApp(t, { env: { CLERK_JWT_KEY: clerk.publicPem.replace(/\n/g, '\\n'), CLERK_AUTHORIZED_PARTIES: 'https://dashboard.example.com' } })
  const statuses: number[] = []
  for (let i = 0; i < 62; i++) {
    // Forged session tokens: every one fails authentication, and every one counts.
    const res = await app.inject({ method: 'POST', url: '/api/dashboard-token/generate', headers: { authorization: `Bearer ${clerk.sessionToken({ sub: `user_${i}` })}x` } })
    statuses.push(res.statusCode)
  }
  t.same(statuses.slice(0, 60), Array(60).fill(401), 'sixty attempts are answered')
  t.same(statuses.slice(60), [429, 429], 'then the route limit (60 a minute) refuses')
  const limited = await app.inject({ method: 'POST', url: '/api/dashboard-token/generate' })
  t.match(limited.json(), { success: false, statusCode: 429, code: 'RATE_LIMITED' })
  t.equal((await app.inject('/websocket-token/')).statusCode, 401, 'other routes still answer under the global budget')
})

t.test('the global limit still counts requests to a route with its own limit', async t => {
  const app = await buildApp(t, { env: { RATE_LIMIT_MAX: '3' } })
  const statuses = []
  for (let i = 0; i < 4; i++) statuses.push((await app.inject({ method: 'POST', url: '/api/dashboard-token/generate' })).statusCode)
  t.same(statuses, [401, 401, 401, 429])
})

t.test('TRUST_PROXY takes true/false, a hop count, or proxy addresses', async t => {
  const base = { JWT_SECRET: 'x'.repeat(32), DATA_DIR: t.testdir() }
  t.equal(loadConfig(base).TRUST_PROXY, false, 'off by default')
  t.equal(loadConfig({ ...base, TRUST_PROXY: 'true' }).TRUST_PROXY, true)
  t.equal(loadConfig({ ...base, TRUST_PROXY: '2' }).TRUST_PROXY, 2)
  t.same(loadConfig({ ...base, TRUST_PROXY: '10.0.0.0/8, 127.0.0.1,::1' }).TRUST_PROXY, ['10.0.0.0/8', '127.0.0.1', '::1'])
  t.throws(() => loadConfig({ ...base, TRUST_PROXY: 'yes please' }), ConfigError)
})

/** Two requests from the same proxy whose X-Forwarded-For differ only in what the client wrote. */
async function spoofedPair (t: Test, trust: string) {
  const app = await buildApp(t, { env: { RATE_LIMIT_MAX: '1', TRUST_PROXY: trust } })
  const send = (forwarded: string) => app.inject({ url: '/websocket-token/', remoteAddress: '127.0.0.1', headers: { 'x-forwarded-for': forwarded } })
  return [(await send('198.51.100.1, 203.0.113.5')).statusCode, (await send('198.51.100.2, 203.0.113.5')).statusCode]
}

t.test('with a hop count or a proxy list, a client cannot pick its own address', async t => {
  t.same(await spoofedPair(t, '1'), [401, 429], 'hop count: the address the proxy saw is the key')
  t.same(await spoofedPair(t, '127.0.0.1'), [401, 429], 'proxy list: the first untrusted address is the key')
  t.same(await spoofedPair(t, 'true'), [401, 401], 'true trusts whatever the client wrote (documented)')
})
