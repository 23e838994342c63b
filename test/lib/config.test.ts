import t from 'tap'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, ConfigSchema, loadConfig } from '../../lib/config.js'

const SECRET = 'x'.repeat(32)

t.test('defaults give the embedded store on port 3000', async t => {
  const dataDir = mkdtempSync(join(tmpdir(), 'gh-config-'))
  const config = loadConfig({ DATA_DIR: dataDir, JWT_SECRET: SECRET })
  t.equal(config.PORT, 3000)
  t.equal(config.HOST, '0.0.0.0')
  t.equal(config.ACCESS_TOKEN_TTL, 86400)
  t.equal(config.WS_TOKEN_TTL, 60)
  t.same(config.store, { kind: 'pglite', dataDir, optimize: false })
  t.same(config.CORS_ORIGINS, [])
  t.same(loadConfig({ DATA_DIR: dataDir, JWT_SECRET: SECRET, EMBEDDED_STORE_OPTIMIZE: 'on' }).store, { kind: 'pglite', dataDir, optimize: true })
})

t.test('every bad variable is named in one error', async t => {
  const error = t.throws(() => loadConfig({ PORT: 'eighty', JWT_SECRET: 'short', WS_TOKEN_TTL: '-1', LOG_LEVEL: 'loud' })) as ConfigError
  t.type(error, ConfigError)
  for (const name of ['PORT', 'JWT_SECRET', 'WS_TOKEN_TTL', 'LOG_LEVEL']) {
    t.match(error.message, name, `${name} is named`)
  }
  t.equal(error.problems.filter(p => p.startsWith('LOG_LEVEL')).length, 1, 'one line per variable')
})

t.test('MAX_RECIPIENTS is capped at 100,000', async t => {
  t.equal(loadConfig({ JWT_SECRET: SECRET, MAX_RECIPIENTS: '100000' }).MAX_RECIPIENTS, 100_000)
  t.throws(() => loadConfig({ JWT_SECRET: SECRET, MAX_RECIPIENTS: '100001' }), /MAX_RECIPIENTS/)
})

t.test('production requires JWT_SECRET', async t => {
  const error = t.throws(() => loadConfig({ NODE_ENV: 'production' })) as ConfigError
  t.match(error.message, /JWT_SECRET: required in production/)
})

t.test('storage backend is chosen by configuration', async t => {
  t.same(loadConfig({ JWT_SECRET: SECRET, DATABASE_URL: 'postgres://u:p@db:5432/x' }).store, { kind: 'postgres', url: 'postgres://u:p@db:5432/x' })
  t.same(loadConfig({ JWT_SECRET: SECRET, SUPABASE_URL: 'https://p.supabase.co', SUPABASE_SERVICE_ROLE_KEY: 'k' }).store,
    { kind: 'supabase', url: 'https://p.supabase.co', serviceRoleKey: 'k' })
  t.throws(() => loadConfig({ JWT_SECRET: SECRET, SUPABASE_URL: 'https://p.supabase.co' }), /SUPABASE_SERVICE_ROLE_KEY/)
  t.throws(() => loadConfig({ JWT_SECRET: SECRET, SUPABASE_URL: 'https://p.supabase.co', SUPABASE_SERVICE_ROLE_KEY: 'k', DATABASE_URL: 'postgres://h/db' }), /not both/)
  t.throws(() => loadConfig({ JWT_SECRET: SECRET, DATABASE_URL: 'mysql://h/db' }), /DATABASE_URL/)
})

t.test('outside production a secret is generated once and kept in DATA_DIR', async t => {
  const dataDir = mkdtempSync(join(tmpdir(), 'gh-config-'))
  const first = loadConfig({ DATA_DIR: dataDir }).JWT_SECRET
  t.ok(first.length >= 32)
  t.equal(loadConfig({ DATA_DIR: dataDir }).JWT_SECRET, first, 'same secret after a restart')
  t.equal(readFileSync(join(dataDir, 'jwt-secret'), 'utf8').trim(), first)
})

t.test('lists and PEM keys are parsed', async t => {
  const config = loadConfig({
    JWT_SECRET: SECRET,
    CORS_ORIGINS: 'https://a.example, https://b.example',
    CLERK_AUTHORIZED_PARTIES: 'https://app.example',
    CLERK_JWT_KEY: '-----BEGIN PUBLIC KEY-----\\nMIIB\\n-----END PUBLIC KEY-----'
  })
  t.same(config.CORS_ORIGINS, ['https://a.example', 'https://b.example'])
  t.same(config.CLERK_AUTHORIZED_PARTIES, ['https://app.example'])
  t.equal(config.CLERK_JWT_KEY, '-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----')
})

t.test('.env.example documents every variable', async t => {
  const example = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8')
  for (const name of Object.keys(ConfigSchema.properties)) {
    t.match(example, new RegExp(`^#? ?${name}=`, 'm'), `${name} is in .env.example`)
  }
})
