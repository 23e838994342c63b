import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { buildApp, TEST_SECRET, testConfig } from './helpers/app.js'
import { listen, Peer, wsUrl } from './ws/helpers.js'
import { freshDatabase, requireDatabaseUrl } from './helpers/backends.js'
import { parseCommand } from '../cli/args.js'
import { main } from '../cli/run.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/

/**
 * Compiles the CLI once, with the project's compiler options, into a directory of
 * this run's own (so concurrent builds of dist/ do not interfere); every test then
 * runs plain JavaScript as `npm run cli` does. Type errors are the typecheck's job.
 */
function buildCli (): string {
  const outDir = join(ROOT, '.tap', `cli-build-${process.pid}`)
  mkdirSync(outDir, { recursive: true })
  t.teardown(() => rmSync(outDir, { recursive: true, force: true }))
  writeFileSync(join(outDir, 'tsconfig.json'), JSON.stringify({
    extends: join(ROOT, 'tsconfig.json'),
    compilerOptions: { noEmit: false, noCheck: true, incremental: false, outDir, rootDir: ROOT },
    files: [join(ROOT, 'cli.ts')],
    include: []
  }))
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  const build = spawnSync(process.execPath, [tsc, '-p', join(outDir, 'tsconfig.json')], { encoding: 'utf8' })
  const cli = join(outDir, 'cli.js')
  if (!existsSync(cli)) throw new Error(`the CLI did not compile: ${build.stdout}${build.stderr}`)
  return cli
}
const CLI = buildCli()

interface Run { code: number | null, stdout: string, stderr: string }

/** Runs `npm run cli -- <args>` as an operator would, with only `env` as configuration. */
function cli (env: Record<string, string>, ...args: string[]): Promise<Run> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'test', JWT_SECRET: TEST_SECRET, ...env }
  // NODE_OPTIONS: tap's coverage hooks only slow the compiled CLI down.
  for (const name of ['NODE_OPTIONS', 'DATABASE_URL', 'SUPABASE_URL', 'SUPABASE_SERVICE_ROLE_KEY', 'REDIS_URL', 'DATA_DIR']) {
    if (!(name in env)) delete childEnv[name]
  }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: childEnv })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', chunk => { stdout += chunk })
    child.stderr.on('data', chunk => { stderr += chunk })
    child.on('error', reject)
    child.on('close', code => resolve({ code, stdout, stderr }))
  })
}

function tempDataDir (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-cli-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** One line on stderr, and no stack trace. */
function assertOneLineError (t: Test, run: Run, pattern: RegExp) {
  t.equal(run.stdout, '', 'nothing on stdout')
  t.match(run.stderr, pattern)
  t.equal(run.stderr.trimEnd().split('\n').length, 1, 'one line on stderr')
  t.notMatch(run.stderr, /\n\s+at /, 'no stack trace')
}

t.test('help describes every command and exits 0', async t => {
  const run = await cli({}, 'help')
  t.equal(run.code, 0)
  for (const command of ['migrate', 'users add', 'users list', 'users delete', 'tokens mint', 'tokens access', 'tokens list', 'tokens revoke']) t.match(run.stdout, command)
  t.match(run.stdout, /one process at a\s+time/, 'warns about the embedded store')
})

t.test('bad arguments are refused with a message naming the problem', async t => {
  const cases: Array<[string[], RegExp]> = [
    [[], /no command/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['users'], /"users" needs a subcommand/],
    [['users', 'add', '--email', 'a@example.com', '--name', 'A'], /--id is required/],
    [['users', 'add', '--id', 'a b', '--email', 'a@example.com', '--name', 'A'], /--id may only contain/],
    [['users', 'add', '--id', 'a', '--email', 'nope', '--name', 'A'], /--email is not an email address/],
    [['users', 'add', '--id', 'a', '--email', 'a@example.com', '--name', ' '], /--name must be 1 to 200 characters/],
    [['users', 'add', '--id', 'a', '--email', 'a@example.com', '--name', 'A', '--role', 'root'], /--role must be admin or user/],
    [['users', 'add', '--id', 'a', '--email', 'a@example.com', '--name', 'A', '--credits', '-5'], /--credits/],
    [['users', 'add', '--id', 'a', '--email', 'a@example.com', '--name', 'A', '--credits', '99999999999'], /--credits must be a whole number/],
    [['users', 'add', '--id', 'a', '--email', 'a@example.com', '--name', 'A', '--bogus'], /users add: Unknown option '--bogus'$/],
    [['users', 'list', 'extra'], /unexpected argument "extra"/],
    [['users', 'delete'], /missing <userId>/],
    [['users', 'delete', 'a b'], /users delete: "a b" is not a user id/],
    [['tokens', 'mint'], /--user is required/],
    [['tokens', 'access'], /--user is required/],
    [['tokens', 'mint', '--user'], /--user/],
    [['tokens', 'mint', '--user', 'admin', '--expires', 'tomorrow'], /--expires must be an ISO-8601 date/],
    [['tokens', 'mint', '--user', 'admin', '--expires', '2001-01-01T00:00:00Z'], /--expires must be in the future/],
    [['tokens', 'mint', '--user', 'admin', '--scopes', 'inbox:read,inbox:delete'], /unknown scope "inbox:delete"/],
    [['tokens', 'mint', '--user', 'admin', '--sends-per-minute', '0'], /--sends-per-minute must be a whole number from 1 to 1000000000/],
    [['tokens', 'mint', '--user', 'admin', '--sends-per-minute', '2.5'], /--sends-per-minute must be a whole number/],
    [['tokens', 'mint', '--user', 'admin', '--send-quota=-3'], /--send-quota must be a whole number/],
    [['tokens', 'mint', '--user', 'admin', '--send-quota', 'lots'], /--send-quota must be a whole number/],
    [['tokens', 'mint', '--user', 'admin', '--send-quota', '1000000001'], /--send-quota must be a whole number from 1 to 1000000000/],
    [['tokens', 'revoke'], /missing <tokenId>/],
    [['tokens', 'revoke', 'a', 'b'], /unexpected argument "b"/],
    [['tokens', 'revoke', 'a/b'], /"a\/b" is not a token id/]
  ]
  for (const [args, pattern] of cases) t.throws(() => parseCommand(args), { name: 'Error', message: pattern }, args.join(' ') || '(nothing)')
  t.match(parseCommand(['users', 'add', '--id', 'a', '--email', 'a@example.com', '--name', ' A ', '--credits', '0', '--org', 'o', '--plan', 'p', '--clerk-id', 'user_1']), {
    name: 'users add', user: { id: 'a', name: 'A', credits: 0, organization_id: 'o', plan_type: 'p', clerk_id: 'user_1' }
  })
  t.same(parseCommand(['tokens', 'list']), { name: 'tokens list', userId: null })
  t.match(parseCommand(['tokens', 'mint', '--user', 'a', '--scopes', 'inbox:read, templates:read,inbox:read']), { scopes: ['inbox:read', 'templates:read'] })
  t.match(parseCommand(['tokens', 'mint', '--user', 'a']), { scopes: null, sendsPerMinute: null, sendQuota: null })
  t.match(parseCommand(['tokens', 'mint', '--user', 'a', '--sends-per-minute', '60', '--send-quota', '1000']), { sendsPerMinute: 60, sendQuota: 1000 })
  t.same(parseCommand(['tokens', '--help']), { name: 'help' })

  // As a process: exit 2 and one line on stderr.
  const runs = await Promise.all([[], ['tokens', 'mint'], ['users', 'add', '--id', 'a', '--bogus']].map(args => cli({}, ...args)))
  for (const run of runs) {
    t.equal(run.code, 2)
    assertOneLineError(t, run, /^gatehouse: .+ \(see: npm run cli -- help\)\n$/)
  }
})

t.test('an operator bootstraps an admin on the embedded store', async t => {
  const dataDir = tempDataDir(t)
  const env = { DATA_DIR: dataDir }

  const migrated = await cli(env, 'migrate')
  t.equal(migrated.code, 0, migrated.stderr)
  t.match(migrated.stdout, /applied migration \d+/)

  const added = await cli(env, 'users', 'add', '--id', 'admin', '--email', 'ops@example.com', '--name', 'Ops', '--role', 'admin', '--org', 'org_1', '--plan', 'pro', '--credits', '10')
  t.equal(added.code, 0, added.stderr)
  t.match(JSON.parse(added.stdout), { id: 'admin', email: 'ops@example.com', name: 'Ops', role: 'admin', organizationId: 'org_1', planType: 'pro', credits: 10 })

  const scopedMint = await cli(env, 'tokens', 'mint', '--user', 'admin', '--name', 'reader', '--scopes', 'inbox:read', '--sends-per-minute', '60', '--send-quota', '1000')
  t.equal(scopedMint.code, 0, scopedMint.stderr)
  const minted = await cli(env, 'tokens', 'mint', '--user', 'admin', '--name', 'bootstrap')
  t.equal(minted.code, 0, minted.stderr)
  t.equal(minted.stderr, '')
  t.equal(minted.stdout.split('\n').length, 2, 'one line')
  const token = minted.stdout.trimEnd()
  t.ok(JWT.test(token), 'stdout is exactly one JWT')

  const listed = await cli(env, 'tokens', 'list', '--user', 'admin')
  t.equal(listed.code, 0, listed.stderr)
  const records = JSON.parse(listed.stdout)
  t.match(records, [
    { id: String, userId: 'admin', name: 'bootstrap', scopes: null, sendsPerMinute: null, sendQuota: null, sendQuotaRemaining: null, expiresAt: null, revokedAt: null, createdBy: null },
    { name: 'reader', scopes: ['inbox:read'], sendsPerMinute: 60, sendQuota: 1000, sendQuotaRemaining: 1000 }
  ])
  t.notOk(listed.stdout.includes(token), 'the token string is never listed')
  t.notOk(listed.stdout.includes(token.split('.')[2]), 'nor its signature')
  const tokenId: string = records[0].id
  const readerToken = scopedMint.stdout.trimEnd()

  const unknown = await cli(env, 'tokens', 'mint', '--user', 'nobody')
  t.equal(unknown.code, 1)
  assertOneLineError(t, unknown, /user not found: nobody/)

  const access = await cli(env, 'tokens', 'access', '--user', 'admin')
  t.equal(access.code, 0, access.stderr)
  const accessToken = access.stdout.trimEnd()
  t.ok(JWT.test(accessToken), 'an access token, alone on stdout')

  await t.test('the server accepts the token, and the CLI keeps out of its DATA_DIR meanwhile', async t => {
    const server = await buildApp(t, { store: { kind: 'pglite', dataDir }, server: { pluginTimeout: 120_000 } })
    const created = await server.inject({
      method: 'POST',
      url: '/api/admin/tokens',
      headers: { authorization: `Bearer ${token}` },
      payload: { userId: 'admin', name: 'from the api' }
    })
    t.equal(created.statusCode, 201, 'an admin route accepts the CLI token')
    t.match(created.json(), { success: true, name: 'Ops', tokenId: String })
    const ticket = await server.inject({ method: 'GET', url: '/websocket-token/', headers: { authorization: `Bearer ${accessToken}` } })
    t.equal(ticket.statusCode, 200, 'the CLI access token gets a ws ticket')
    const reader = { authorization: `Bearer ${readerToken}` }
    t.equal((await server.inject({ method: 'GET', url: '/api/messages/inbox', headers: reader })).statusCode, 200, 'the scoped CLI token reads the inbox')
    t.equal((await server.inject({ method: 'GET', url: '/api/admin/tokens', headers: reader })).statusCode, 403, 'and nothing else')

    const busy = await cli(env, 'tokens', 'list')
    t.equal(busy.code, 1)
    assertOneLineError(t, busy, /in use by process \d+/)
  })

  const revoked = await cli(env, 'tokens', 'revoke', tokenId)
  t.equal(revoked.code, 0, revoked.stderr)
  t.match(JSON.parse(revoked.stdout), { id: tokenId, revokedAt: String })
  const server = await buildApp(t, { store: { kind: 'pglite', dataDir }, server: { pluginTimeout: 120_000 } })
  const refused = await server.inject({ method: 'GET', url: '/api/admin/tokens', headers: { authorization: `Bearer ${token}` } })
  t.equal(refused.statusCode, 401, 'a revoked token is refused')
})

/** The CLI's entry point in this process: exit code and output, without a child process. */
async function mainInProcess (env: Record<string, string>, ...args: string[]): Promise<Run> {
  const run = { code: 0 as number | null, stdout: '', stderr: '' }
  run.code = await main(args, { NODE_ENV: 'test', JWT_SECRET: TEST_SECRET, ...env }, {
    out: text => { run.stdout += text },
    err: text => { run.stderr += text }
  })
  return run
}

t.test('configuration and storage failures exit 1 with one line, no stack trace', async t => {
  const badSecret = await mainInProcess({ DATA_DIR: tempDataDir(t), JWT_SECRET: 'short' }, 'tokens', 'list')
  t.equal(badSecret.code, 1)
  assertOneLineError(t, badSecret, /invalid configuration: JWT_SECRET/)

  const down = await mainInProcess({ DATABASE_URL: 'postgres://nobody:nothing@127.0.0.1:1/none', STORE_TIMEOUT_MS: '1000' }, 'tokens', 'list')
  t.equal(down.code, 1)
  assertOneLineError(t, down, /ECONNREFUSED|unavailable/)
  t.notMatch(down.stderr, /nothing@/, 'the connection string is not echoed')

  const supabase = await mainInProcess({ SUPABASE_URL: 'http://127.0.0.1:1', SUPABASE_SERVICE_ROLE_KEY: 'key' }, 'migrate')
  t.equal(supabase.code, 1)
  assertOneLineError(t, supabase, /DATABASE_URL.*supabase db push/)
})

t.test('the same commands against Postgres', { skip: process.env.CI ? false : (process.env.TEST_DATABASE_URL ? false : 'TEST_DATABASE_URL is not set') }, async t => {
  const env = { DATABASE_URL: await freshDatabase(t, requireDatabaseUrl()) }

  const early = await cli(env, 'tokens', 'list')
  t.equal(early.code, 1)
  assertOneLineError(t, early, /unapplied migrations.*npm run cli -- migrate/)

  const migrated = await cli(env, 'migrate')
  t.equal(migrated.code, 0, migrated.stderr)
  t.match(migrated.stdout, /applied migration \d+/)
  t.equal((await cli(env, 'migrate')).stdout, 'database schema is up to date\n')

  t.equal((await cli(env, 'users', 'add', '--id', 'admin', '--email', 'ops@example.com', '--name', 'Ops', '--role', 'admin')).code, 0)
  t.equal((await cli(env, 'users', 'add', '--id', 'bob', '--email', 'bob@example.com', '--name', 'Bob', '--clerk-id', 'user_bob')).code, 0)
  const taken = await cli(env, 'users', 'add', '--id', 'carol', '--email', 'carol@example.com', '--name', 'Carol', '--clerk-id', 'user_bob')
  t.equal(taken.code, 1)
  assertOneLineError(t, taken, /clerk id "user_bob" already belongs to another user/)
  t.match(JSON.parse((await cli(env, 'users', 'list')).stdout), [{ id: 'admin', role: 'admin' }, { id: 'bob', role: 'user', clerkId: 'user_bob' }])
  const minted = await cli(env, 'tokens', 'mint', '--user', 'admin', '--expires', new Date(Date.now() + 86_400_000).toISOString())
  t.equal(minted.code, 0, minted.stderr)
  t.ok(JWT.test(minted.stdout.trimEnd()), 'stdout is exactly one JWT')

  const records = JSON.parse((await cli(env, 'tokens', 'list')).stdout)
  t.match(records, [{ userId: 'admin', expiresAt: String, revokedAt: null }])
  const revoked = await cli(env, 'tokens', 'revoke', records[0].id)
  t.equal(revoked.code, 0, revoked.stderr)
  t.match(JSON.parse(revoked.stdout), { revokedAt: String })
  const unknown = await cli(env, 'tokens', 'revoke', 'no-such-token')
  t.equal(unknown.code, 1)
  assertOneLineError(t, unknown, /token not found: no-such-token/)
})

t.test('users delete closes the user\'s sockets on a server process through Redis', { skip: process.env.CI ? false : (process.env.TEST_DATABASE_URL ? false : 'TEST_DATABASE_URL is not set') }, async t => {
  const database = await freshDatabase(t, requireDatabaseUrl())
  const redis = { REDIS_URL: process.env.REDIS_URL_TEST ?? 'redis://127.0.0.1:6379', REDIS_KEY_PREFIX: `gatehouse-cli-${process.pid}:` }
  const env = { DATABASE_URL: database, ...redis }
  t.equal((await cli(env, 'migrate')).code, 0)
  t.equal((await cli(env, 'users', 'add', '--id', 'dora', '--email', 'dora@example.com', '--name', 'Dora')).code, 0)
  t.equal((await cli(env, 'users', 'add', '--id', 'eve', '--email', 'eve@example.com', '--name', 'Eve')).code, 0)

  const server = await buildApp(t, { config: testConfig(redis, { kind: 'postgres', url: database }) })
  const base = await listen(server)
  const socket = await Peer.ready(t, wsUrl(base, server.tokens.issueWsTicket('dora').token))

  const deleted = await cli(env, 'users', 'delete', 'dora')
  t.equal(deleted.code, 0, deleted.stderr)
  t.same(JSON.parse(deleted.stdout), { deletedIds: ['dora'] })
  t.equal((await socket.untilClosed()).closed.code, 4003, 'the socket on the server closes with 4003')
  t.equal(await server.store.getUser('dora'), null)

  const again = await cli(env, 'users', 'delete', 'dora')
  t.equal(again.code, 1)
  assertOneLineError(t, again, /user not found: dora/)

  // Redis unreachable: the user is deleted all the same, and the operator is told the sockets were not reached.
  const unreachable = await cli({ ...env, REDIS_URL: 'redis://127.0.0.1:1' }, 'users', 'delete', 'eve')
  t.equal(unreachable.code, 1)
  assertOneLineError(t, unreachable, /done, but server processes were not told \(Redis unavailable/)
  t.equal(await server.store.getUser('eve'), null)
})
