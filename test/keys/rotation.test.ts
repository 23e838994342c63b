import { randomBytes } from 'node:crypto'
import t from 'tap'
import { decodeProtectedHeader } from 'jose'
import { accessTokenFor, buildApp, createUser, TEST_SECRET } from '../helpers/app.js'
import { freshDatabase, requireDatabaseUrl } from '../helpers/backends.js'
import { createPostgresDriver } from '../../plugins/app/supabase/drivers/postgres.js'
import { migrate } from '../../plugins/app/supabase/migrate.js'
import { main } from '../../cli/run.js'

const KEK = 'key-encryption-key-for-tests-0123456789abcdef'

/** Waits for a condition that another process brings about; fails the test if it never comes. */
async function eventually (what: string, check: () => boolean | Promise<boolean>, limitMs = 15_000) {
  const end = Date.now() + limitMs
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`never happened: ${what}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

/** The CLI in this process, as an operator runs it. */
async function cli (env: Record<string, string>, ...args: string[]) {
  const run = { code: 0 as number, stdout: '', stderr: '' }
  run.code = await main(args, { NODE_ENV: 'test', JWT_SECRET: TEST_SECRET, ...env }, {
    out: text => { run.stdout += text },
    err: text => { run.stderr += text }
  })
  return run
}

t.test('rotation across two processes sharing Postgres and Redis', async t => {
  const redisUrl = process.env.REDIS_URL_TEST
  if (!redisUrl) throw new Error('REDIS_URL_TEST is not set')
  const url = await freshDatabase(t, requireDatabaseUrl())
  const setup = createPostgresDriver(url, { timeoutMs: 10_000, max: 1 })
  await migrate(setup.sql)
  await setup.close()

  const env = {
    DATABASE_URL: url,
    JWT_ALGORITHM: 'ES256',
    JWT_KEY_ENCRYPTION_KEY: KEK,
    REDIS_URL: redisUrl,
    REDIS_KEY_PREFIX: `test${randomBytes(4).toString('hex')}:`
  }
  // Two servers start at once on an empty key table: they agree on one key set.
  const store = { kind: 'postgres' as const, url }
  const [a, b] = await Promise.all([buildApp(t, { env, store }), buildApp(t, { env, store })])
  const status = async (app: typeof a, token: string) =>
    (await app.inject({ method: 'GET', url: '/websocket-token/', headers: { authorization: `Bearer ${token}` } })).statusCode
  const kidOf = (token: string) => decodeProtectedHeader(token).kid as string

  const user = await createUser(a)
  const oldToken = accessTokenFor(a, user)
  const firstKid = kidOf(oldToken)
  t.equal(kidOf(accessTokenFor(b, user)), firstKid, 'both processes sign with the same current key')
  t.equal(await status(b, oldToken), 200, 'a token from one process works on the other')

  const listed = await cli(env, 'keys', 'list')
  t.equal(listed.code, 0, listed.stderr)
  const keys = JSON.parse(listed.stdout) as Array<{ kid: string, state: string }>
  t.same(keys.map(k => k.state).sort(), ['current', 'next'])
  t.notMatch(listed.stdout, /privateKey|PRIVATE/, 'never a private key')
  const nextKid = keys.find(k => k.state === 'next')!.kid

  const rotated = await cli(env, 'keys', 'rotate')
  t.equal(rotated.code, 0, rotated.stderr)
  const after = JSON.parse(rotated.stdout) as Array<{ kid: string, state: string }>
  t.equal(after.find(k => k.kid === firstKid)?.state, 'previous')
  t.equal(after.find(k => k.kid === nextKid)?.state, 'current', 'the published next key signs now')

  // Redis tells both processes; no restart.
  for (const app of [a, b]) await eventually('the process signs with the new key', () => kidOf(accessTokenFor(app, user)) === nextKid)
  const newToken = accessTokenFor(b, user)
  const fromCli = await cli(env, 'tokens', 'access', '--user', user.id)
  t.equal(fromCli.code, 0, fromCli.stderr)
  t.equal(kidOf(fromCli.stdout.trim()), nextKid, 'the CLI signs access tokens with the current key too')
  for (const app of [a, b]) {
    t.equal(await status(app, oldToken), 200, 'a token of the previous key keeps working until it expires')
    t.equal(await status(app, newToken), 200, 'a token of the new key works everywhere')
  }
  const jwks = (await a.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json().keys.map((k: { kid: string }) => k.kid)
  t.ok(jwks.includes(firstKid) && jwks.includes(nextKid), 'the JWKS keeps the previous key')
  t.equal(jwks.length, 3, 'previous, current and the new next')

  t.match((await cli(env, 'keys', 'retire', nextKid)).stderr, /is current: only a previous key can be retired/)
  t.match((await cli(env, 'keys', 'retire', 'nope')).stderr, /key not found: nope/)
  const retired = await cli(env, 'keys', 'retire', firstKid)
  t.equal(retired.code, 0, retired.stderr)
  for (const app of [a, b]) {
    await eventually('the retired kid is refused', async () => await status(app, oldToken) === 401)
    t.equal(await status(app, newToken), 200, 'tokens of the current key are unaffected')
  }
  const published = (await b.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json().keys.map((k: { kid: string }) => k.kid)
  t.notOk(published.includes(firstKid), 'a retired key is no longer published')
})

t.test('keys rotate needs the key-encryption key; a wrong one is refused at start', async t => {
  const url = await freshDatabase(t, requireDatabaseUrl())
  const setup = createPostgresDriver(url, { timeoutMs: 10_000, max: 1 })
  await migrate(setup.sql)
  await setup.close()
  const run = await cli({ DATABASE_URL: url }, 'keys', 'rotate')
  t.equal(run.code, 1)
  t.match(run.stderr, /JWT_KEY_ENCRYPTION_KEY is required/)

  const first = await cli({ DATABASE_URL: url, JWT_KEY_ENCRYPTION_KEY: KEK }, 'keys', 'rotate')
  t.equal(first.code, 0, first.stderr)
  t.same(JSON.parse(first.stdout).map((k: { state: string }) => k.state).sort(), ['current', 'next', 'previous'], 'the first rotation creates the keys first')
  await t.rejects(buildApp(t, { env: { JWT_ALGORITHM: 'ES256', JWT_KEY_ENCRYPTION_KEY: 'another-key-encryption-key-0123456789' }, store: { kind: 'postgres', url } }),
    /cannot be decrypted: JWT_KEY_ENCRYPTION_KEY is not the key it was stored with/)
})
