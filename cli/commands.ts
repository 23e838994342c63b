import { randomUUID } from 'node:crypto'
import Fastify from 'fastify'
import type { Config } from '../lib/config.js'
import env from '../plugins/external/env.js'
import jwt from '../plugins/external/jwt.js'
import tokens, { type TokenService } from '../plugins/app/tokens.js'
import { createDriver } from '../plugins/app/supabase/index.js'
import { migrate, pendingMigrations } from '../plugins/app/supabase/migrate.js'
import { Store, type StoreChange } from '../plugins/app/supabase/store.js'
import { channels, publishOnce } from '../plugins/app/redis.js'
import { generateSigningKey, KEY_REFRESH_MS, KeyRing, publishKeysChanged } from '../plugins/app/keys.js'
import type { StoredSigningKey } from '../schemas/keys.js'
import type { RpcDriver, SqlAccess } from '../plugins/app/supabase/driver.js'
import type { User } from '../schemas/users.js'
import { WsClose } from '../schemas/ws.js'
import { CliError, type Command } from './args.js'
import type { Io } from './run.js'

const json = (value: unknown) => JSON.stringify(value, null, 2) + '\n'

/** Runs a parsed command against the configured store; the store is closed whatever happens. */
export async function execute (command: Exclude<Command, { name: 'help' }>, config: Config, io: Io): Promise<void> {
  if (command.name === 'migrate' && config.store.kind === 'supabase') {
    throw new CliError('migrations need a Postgres connection: set DATABASE_URL to the Supabase project\'s Postgres connection string (and unset SUPABASE_URL for this command), or run `supabase db push`')
  }
  const driver = await createDriver(config.store, config.STORE_TIMEOUT_MS)
  try {
    if (command.name === 'migrate') {
      const applied = [...driver.migratedAtStart ?? [], ...await migrate(driver.sql as SqlAccess)]
      io.out(applied.length > 0 ? applied.map(v => `applied migration ${v}\n`).join('') : 'database schema is up to date\n')
      return
    }
    await ensureSchema(driver)
    const store = new Store(driver, config.STORE_TIMEOUT_MS)
    // Server processes cache users and tokens: with Redis they hear of the changes made here at once.
    const changes: StoreChange[] = []
    store.onChange(change => changes.push(change))
    const announce = async (more: Array<[string, unknown]> = []) => {
      if (!config.REDIS_URL || changes.length + more.length === 0) return
      try {
        await publishOnce({ url: config.REDIS_URL, timeoutMs: config.REDIS_TIMEOUT_MS }, [...changes.map(change => [channels(config.REDIS_KEY_PREFIX).auth, change] as [string, unknown]), ...more])
      } catch (error) {
        throw new CliError(`done, but server processes were not told (Redis unavailable: ${(error as Error).message}): open sockets stay open and cached state lasts up to AUTH_CACHE_TTL_MS`)
      }
    }
    switch (command.name) {
      case 'users add': {
        const user = await store.upsertUser(command.user)
        if (!user) {
          throw new CliError(command.user.clerk_id === undefined
            ? `user ${command.user.id} is still being deleted; add them again once their data is gone`
            : `clerk id "${command.user.clerk_id}" already belongs to another user, or user ${command.user.id} is still being deleted`)
        }
        await announce()
        io.out(json(user))
        return
      }
      case 'users list': {
        if (!driver.sql) throw new CliError('users list needs DATABASE_URL or the embedded store')
        const rows = await driver.sql.query<{ user: User }>('select gatehouse_user_json(u) as "user" from users u where u.deleted_at is null order by u.created_at, u.id')
        io.out(json(rows.map(r => r.user)))
        return
      }
      case 'users delete': {
        const deletedIds = await store.deleteUser({ id: command.userId })
        if (deletedIds.length === 0) throw new CliError(`user not found: ${command.userId}`)
        await announce(deletedIds.map(userId => [channels(config.REDIS_KEY_PREFIX).hub, { type: 'disconnect', userId, code: WsClose.REVOKED, reason: 'user removed' }]))
        io.out(json({ deletedIds }))
        return
      }
      case 'tokens mint': {
        const tokenId = randomUUID()
        const created = await store.createApiToken({
          id: tokenId,
          userId: command.userId,
          createdBy: null,
          name: command.label,
          expiresAt: command.expiresAt?.toISOString() ?? null,
          scopes: command.scopes,
          sendsPerMinute: command.sendsPerMinute,
          sendQuota: command.sendQuota
        })
        if (!created) throw new CliError(`user not found: ${command.userId}`)
        io.out(await withTokens(config, store, tokens => tokens.issueApi(tokenId, command.userId, command.expiresAt)) + '\n')
        return
      }
      case 'tokens access': {
        const user = await store.getUser(command.userId)
        if (!user) throw new CliError(`user not found: ${command.userId}`)
        io.out(await withTokens(config, store, tokens => tokens.issueAccess(user).token) + '\n')
        return
      }
      case 'tokens list': {
        if (command.userId && !(await store.getUser(command.userId))) throw new CliError(`user not found: ${command.userId}`)
        io.out(json(await store.listApiTokens(command.userId)))
        return
      }
      case 'tokens revoke': {
        const token = await store.revokeApiToken(command.tokenId)
        if (!token) throw new CliError(`token not found: ${command.tokenId}`)
        await announce()
        io.out(json(token))
        return
      }
      case 'keys list': {
        io.out(json(listedKeys(await store.signingKeys())))
        return
      }
      case 'keys rotate': {
        const secret = requireKeyEncryptionKey(config)
        let keys = await store.rotateSigningKeys(generateSigningKey(secret))
        if (!keys) {
          // No keys yet: create them as a starting server would, then rotate once.
          await new KeyRing(store, secret).ensure()
          keys = await store.rotateSigningKeys(generateSigningKey(secret))
        }
        await announceKeys(config)
        io.out(json(listedKeys(keys ?? [])))
        return
      }
      case 'keys retire': {
        const result = await store.retireSigningKey(command.kid)
        if (result.error === 'not_found') throw new CliError(`key not found: ${command.kid}`)
        if (result.error === 'active') throw new CliError(`key ${command.kid} is ${result.state}: only a previous key can be retired (rotate first)`)
        await announceKeys(config)
        io.out(json(listedKeys(result.keys ?? [])))
      }
    }
  } finally {
    await driver.close()
  }
}

/** Keys as operators see them: never a private key, even encrypted. */
function listedKeys (keys: StoredSigningKey[]) {
  return keys.map(({ kid, alg, state, createdAt, stateChangedAt }) => ({ kid, alg, state, createdAt, stateChangedAt }))
}

function requireKeyEncryptionKey (config: Config): string {
  if (!config.JWT_KEY_ENCRYPTION_KEY) throw new CliError('JWT_KEY_ENCRYPTION_KEY is required to create signing keys (the same as the servers use)')
  return config.JWT_KEY_ENCRYPTION_KEY
}

/** Tells every server process to read the keys again now (with REDIS_URL; otherwise they do within KEY_REFRESH_MS). */
async function announceKeys (config: Config): Promise<void> {
  if (!config.REDIS_URL) return
  try {
    await publishKeysChanged({ url: config.REDIS_URL, prefix: config.REDIS_KEY_PREFIX, timeoutMs: config.REDIS_TIMEOUT_MS })
  } catch (error) {
    throw new CliError(`keys changed, but servers could not be told through Redis (${(error as Error).message}); they read the keys again within ${KEY_REFRESH_MS / 1000} s`)
  }
}

/** The embedded store migrates itself, as the server does; a server database must be migrated first. */
async function ensureSchema (driver: RpcDriver): Promise<void> {
  if (!driver.sql) return
  if (driver.kind === 'pglite') {
    await migrate(driver.sql)
    return
  }
  const pending = await pendingMigrations(driver.sql)
  if (pending.length > 0) throw new CliError(`the database has unapplied migrations (${pending.join(', ')}): run \`npm run cli -- migrate\` first`)
}

/** Signs with the server's own token plugins, so tokens are exactly what the HTTP routes issue. */
async function withTokens (config: Config, store: Store, sign: (tokens: TokenService) => string): Promise<string> {
  const app = Fastify({ logger: false })
  try {
    await app.register(env, { config })
    await app.register(jwt)
    await app.register(tokens)
    await app.ready()
    if (config.JWT_ALGORITHM === 'ES256') {
      const ring = new KeyRing(store, requireKeyEncryptionKey(config))
      await ring.ensure()
      app.tokens.keyRing = ring
    }
    return sign(app.tokens)
  } finally {
    await app.close()
  }
}
