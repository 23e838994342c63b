import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { envSchema } from 'env-schema'
import { Type, type Static } from '@sinclair/typebox'

const Url = Type.String({ pattern: '^[a-z][a-z0-9+.-]*://.+' })

export const ConfigSchema = Type.Object({
  NODE_ENV: Type.Union([Type.Literal('development'), Type.Literal('production'), Type.Literal('test')], { default: 'development' }),
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3000 }),
  HOST: Type.String({ default: '0.0.0.0' }),
  LOG_LEVEL: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map(l => Type.Literal(l)), { default: 'info' }),
  DATA_DIR: Type.String({ minLength: 1, default: './.data' }),
  // on: V8 optimizes the embedded store's WebAssembly (faster bulk writes, about 45 MiB more memory).
  EMBEDDED_STORE_OPTIMIZE: Type.Union([Type.Literal('on'), Type.Literal('off')], { default: 'off' }),
  DATABASE_URL: Type.Optional(Type.String({ pattern: '^postgres(ql)?://.+' })),
  SUPABASE_URL: Type.Optional(Url),
  SUPABASE_SERVICE_ROLE_KEY: Type.Optional(Type.String({ minLength: 1 })),
  REDIS_URL: Type.Optional(Type.String({ pattern: '^rediss?://.+' })),
  REDIS_KEY_PREFIX: Type.String({ pattern: '^[A-Za-z0-9:_.-]{1,64}$', default: 'gatehouse:' }),
  REDIS_TIMEOUT_MS: Type.Integer({ minimum: 50, default: 2000 }),
  JWT_SECRET: Type.Optional(Type.String({ minLength: 32 })),
  JWT_ALGORITHM: Type.Union([Type.Literal('HS256'), Type.Literal('ES256')], { default: 'HS256' }),
  JWT_KEY_ENCRYPTION_KEY: Type.Optional(Type.String({ minLength: 32 })),
  INTROSPECTION_TOKEN: Type.Optional(Type.String({ minLength: 32 })),
  ACCESS_TOKEN_TTL: Type.Integer({ minimum: 60, default: 86400 }),
  WS_TOKEN_TTL: Type.Integer({ minimum: 5, maximum: 3600, default: 60 }),
  CLERK_JWT_KEY: Type.Optional(Type.String({ pattern: 'BEGIN PUBLIC KEY' })),
  CLERK_SECRET_KEY: Type.Optional(Type.String({ pattern: '^sk_' })),
  CLERK_AUTHORIZED_PARTIES: Type.Optional(Type.String()),
  CLERK_WEBHOOK_SECRET: Type.Optional(Type.String({ pattern: '^whsec_' })),
  CORS_ORIGINS: Type.String({ default: '' }),
  // true/false, a hop count, or a comma-separated list of proxy addresses/CIDRs.
  TRUST_PROXY: Type.String({ default: 'false', pattern: '^(true|false|\\d+|[0-9A-Fa-f.:/, ]+)$' }),
  BODY_LIMIT: Type.Integer({ minimum: 1024, default: 1048576 }),
  // A large send is written in chunks of at most 20,000 rows, each a transaction within STORE_TIMEOUT_MS.
  MAX_RECIPIENTS: Type.Integer({ minimum: 1, maximum: 100000, default: 10000 }),
  // Rows of a send's first transaction; larger sends continue in chunks growing 4x, delivered as each commits.
  SEND_FIRST_CHUNK: Type.Integer({ minimum: 0, maximum: 100000, default: 0 }),
  MAX_CONTENT_BYTES: Type.Integer({ minimum: 1, maximum: 49152, default: 16384 }),
  RATE_LIMIT_MAX: Type.Integer({ minimum: 1, default: 600 }),
  STORE_TIMEOUT_MS: Type.Integer({ minimum: 100, default: 5000 }),
  AUTH_CACHE_TTL_MS: Type.Integer({ minimum: 0, maximum: 600000, default: 30000 }),
  // Retention, in seconds; 0 keeps messages for good. Idempotency keys replay for 24 h at most.
  ACKED_MESSAGE_TTL: Type.Integer({ minimum: 0, default: 2592000 }),
  UNACKED_MESSAGE_TTL: Type.Integer({ minimum: 0, default: 7776000 }),
  IDEMPOTENCY_TTL: Type.Integer({ minimum: 60, maximum: 86400, default: 86400 }),
  PRUNE_INTERVAL_MS: Type.Integer({ minimum: 100, maximum: 86400000, default: 3600000 }),
  PRUNE_BATCH: Type.Integer({ minimum: 1, maximum: 100000, default: 2000 }),
  WS_HEARTBEAT_MS: Type.Integer({ minimum: 100, default: 30000 }),
  WS_SEND_BUFFER_BYTES: Type.Integer({ minimum: 1024, default: 1048576 }),
  SHUTDOWN_GRACE_MS: Type.Integer({ minimum: 0, default: 10000 }),
  REQUEST_TIMEOUT_MS: Type.Integer({ minimum: 100, default: 30000 }),
  CONNECTION_TIMEOUT_MS: Type.Integer({ minimum: 0, default: 120000 }),
  KEEP_ALIVE_TIMEOUT_MS: Type.Integer({ minimum: 100, default: 72000 }),
  WS_MAX_SOCKETS_PER_USER: Type.Integer({ minimum: 1, default: 20 }),
  WS_CONNECT_RATE_MAX: Type.Integer({ minimum: 1, default: 120 }),
  METRICS: Type.Union([Type.Literal('on'), Type.Literal('off')], { default: 'on' }),
  METRICS_TOKEN: Type.Optional(Type.String({ minLength: 16 })),
  DOCS: Type.Union([Type.Literal('on'), Type.Literal('off')], { default: 'on' }),
  HSTS_MAX_AGE: Type.Integer({ minimum: 0, default: 0 }),
  DEMO: Type.Optional(Type.Boolean())
})

type RawConfig = Static<typeof ConfigSchema>

export type StoreBackend =
  | { kind: 'pglite', dataDir: string | null, optimize?: boolean }
  | { kind: 'postgres', url: string }
  | { kind: 'supabase', url: string, serviceRoleKey: string }

export interface Config extends Omit<RawConfig, 'JWT_SECRET' | 'CLERK_AUTHORIZED_PARTIES' | 'CORS_ORIGINS' | 'CLERK_JWT_KEY' | 'TRUST_PROXY' | 'DEMO'> {
  /** Fastify's trustProxy: all, none, a hop count, or proxy addresses/CIDRs. */
  TRUST_PROXY: boolean | number | string[]
  JWT_SECRET: string
  /** Serve the demo page at /demo. */
  DEMO: boolean
  CLERK_JWT_KEY?: string
  CLERK_AUTHORIZED_PARTIES: string[]
  CORS_ORIGINS: string[]
  store: StoreBackend
}

export class ConfigError extends Error {
  constructor (public readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map(p => `  - ${p}`).join('\n')}`)
    this.name = 'ConfigError'
  }
}

const list = (value: string | undefined) => (value ?? '').split(',').map(s => s.trim()).filter(Boolean)

/** `true`, `false`, a hop count, or a list of proxy addresses/CIDRs, as Fastify's trustProxy takes them. */
function trustProxy (value: string): Config['TRUST_PROXY'] {
  if (value === 'true') return true
  if (value === 'false') return false
  if (/^\d+$/.test(value)) return Number(value)
  return list(value)
}

interface AjvError { instancePath: string, keyword: string, message?: string, params: Record<string, unknown> }

/** One line per variable; a union of literals is described by its allowed values. */
function describe (errors: AjvError[]): string[] {
  const byName = new Map<string, string>()
  for (const error of errors) {
    const name = error.instancePath.replace(/^\//, '') || String(error.params.missingProperty ?? 'environment')
    const property = (ConfigSchema.properties as Record<string, { anyOf?: Array<{ const?: unknown }> }>)[name]
    if (error.keyword === 'anyOf' || error.keyword === 'const') {
      byName.set(name, `must be one of ${property?.anyOf?.map(s => s.const).join(', ')}`)
    } else if (!byName.has(name)) {
      byName.set(name, error.message ?? 'is invalid')
    }
  }
  return [...byName].map(([name, message]) => `${name}: ${message}`)
}

/**
 * Reads and validates configuration from the environment. Every problem is
 * collected so an operator fixes them all in one go.
 */
export function loadConfig (env: NodeJS.ProcessEnv = process.env): Config {
  let raw: RawConfig
  try {
    // env-schema only considers variables named in the schema.
    raw = envSchema<RawConfig>({ schema: ConfigSchema, data: env, dotenv: false })
  } catch (err) {
    const problems = describe((err as { errors?: AjvError[] }).errors ?? [])
    throw new ConfigError(problems.length > 0 ? problems : [(err as Error).message])
  }

  const problems: string[] = []
  if (raw.DATABASE_URL && raw.SUPABASE_URL) problems.push('DATABASE_URL and SUPABASE_URL: set one storage backend, not both')
  if (raw.SUPABASE_URL && !raw.SUPABASE_SERVICE_ROLE_KEY) problems.push('SUPABASE_SERVICE_ROLE_KEY: required when SUPABASE_URL is set')
  if (raw.NODE_ENV === 'production' && !raw.JWT_SECRET) problems.push('JWT_SECRET: required in production (at least 32 bytes)')
  if (raw.JWT_ALGORITHM === 'ES256' && !raw.JWT_KEY_ENCRYPTION_KEY) problems.push('JWT_KEY_ENCRYPTION_KEY: required when JWT_ALGORITHM is ES256 (at least 32 bytes; it encrypts the stored signing keys)')
  if (problems.length > 0) throw new ConfigError(problems)

  const store: StoreBackend = raw.DATABASE_URL
    ? { kind: 'postgres', url: raw.DATABASE_URL }
    : raw.SUPABASE_URL
      ? { kind: 'supabase', url: raw.SUPABASE_URL, serviceRoleKey: raw.SUPABASE_SERVICE_ROLE_KEY as string }
      : { kind: 'pglite', dataDir: resolve(raw.DATA_DIR), optimize: raw.EMBEDDED_STORE_OPTIMIZE === 'on' }

  return {
    ...raw,
    JWT_SECRET: raw.JWT_SECRET ?? developmentSecret(resolve(raw.DATA_DIR)),
    // Operators often paste PEM keys into one-line variables with literal \n.
    CLERK_JWT_KEY: raw.CLERK_JWT_KEY?.replace(/\\n/g, '\n'),
    CLERK_AUTHORIZED_PARTIES: list(raw.CLERK_AUTHORIZED_PARTIES),
    CORS_ORIGINS: list(raw.CORS_ORIGINS),
    TRUST_PROXY: trustProxy(raw.TRUST_PROXY),
    DEMO: raw.DEMO ?? raw.NODE_ENV !== 'production',
    store
  }
}

/** Outside production a secret is generated once and kept in DATA_DIR so tokens survive restarts. */
function developmentSecret (dataDir: string): string {
  const file = join(dataDir, 'jwt-secret')
  try {
    const existing = readFileSync(file, 'utf8').trim()
    if (existing.length >= 32) return existing
  } catch {}
  mkdirSync(dataDir, { recursive: true })
  const secret = randomBytes(48).toString('base64url')
  writeFileSync(file, secret + '\n', { mode: 0o600 })
  return secret
}
