import { randomUUID } from 'node:crypto'
import Fastify from 'fastify'
import { ConfigError, loadConfig, type Config } from '../config.js'
import { ApiError } from '../errors.js'
import env from '../../plugins/external/env.js'
import jwt from '../../plugins/external/jwt.js'
import tokens from '../../plugins/app/tokens.js'
import { createDriver } from '../../plugins/app/supabase/index.js'
import { migrate, pendingMigrations } from '../../plugins/app/supabase/migrate.js'
import { Store } from '../../plugins/app/supabase/store.js'
import type { RpcDriver, SqlAccess } from '../../plugins/app/supabase/driver.js'
import type { User } from '../../schemas/users.js'
import { HELP, parseCommand, UsageError, type Command } from './args.js'

/** A failure the operator can act on: the CLI prints the message and exits with 1. */
export class CliError extends Error {}

export interface Io {
  out (text: string): void
  err (text: string): void
}

/** Runs one CLI invocation and returns its exit code; never throws. */
export async function main (argv: string[], environment: NodeJS.ProcessEnv, io: Io): Promise<number> {
  try {
    const command = parseCommand(argv)
    if (command.name === 'help') {
      io.out(HELP)
      return 0
    }
    await execute(command, loadConfig(environment), io)
    return 0
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`gatehouse: ${error.message} (see: npm run cli -- help)\n`)
      return 2
    }
    io.err(`gatehouse: ${describe(error)}\n`)
    return 1
  }
}

/** A message without a stack trace; a dependency failure names its cause. */
function describe (error: unknown): string {
  if (error instanceof ConfigError || error instanceof CliError) return error.message
  if (error instanceof ApiError) {
    const cause = error.cause instanceof Error ? error.cause.message : undefined
    return cause ? `${error.message} (${cause})` : error.message
  }
  return `storage error: ${error instanceof Error ? error.message : String(error)}`
}

const json = (value: unknown) => JSON.stringify(value, null, 2) + '\n'

async function execute (command: Exclude<Command, { name: 'help' }>, config: Config, io: Io): Promise<void> {
  if (command.name === 'migrate' && config.store.kind === 'supabase') {
    throw new CliError('migrations need a Postgres connection: set DATABASE_URL to the Supabase project\'s Postgres connection string (and unset SUPABASE_URL for this command), or run `supabase db push`')
  }
  const driver = await createDriver(config.store, config.STORE_TIMEOUT_MS)
  try {
    if (command.name === 'migrate') {
      const applied = await migrate(driver.sql as SqlAccess)
      io.out(applied.length > 0 ? applied.map(v => `applied migration ${v}\n`).join('') : 'database schema is up to date\n')
      return
    }
    await ensureSchema(driver)
    const store = new Store(driver, config.STORE_TIMEOUT_MS)
    switch (command.name) {
      case 'users add': {
        const user = await store.upsertUser(command.user)
        if (!user) throw new CliError(`clerk id "${command.user.clerk_id}" already belongs to another user`)
        io.out(json(user))
        return
      }
      case 'users list': {
        if (!driver.sql) throw new CliError('users list needs DATABASE_URL or the embedded store')
        const rows = await driver.sql.query<{ user: User }>('select gatehouse_user_json(u) as "user" from users u order by u.created_at, u.id')
        io.out(json(rows.map(r => r.user)))
        return
      }
      case 'tokens mint': {
        const tokenId = randomUUID()
        const created = await store.createApiToken({
          id: tokenId,
          userId: command.userId,
          createdBy: null,
          name: command.label,
          expiresAt: command.expiresAt?.toISOString() ?? null
        })
        if (!created) throw new CliError(`user not found: ${command.userId}`)
        io.out(await signApiToken(config, tokenId, command.userId, command.expiresAt) + '\n')
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
        io.out(json(token))
      }
    }
  } finally {
    await driver.close()
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

/** Signs with the server's own token plugins, so the token is exactly what POST /api/admin/tokens returns. */
async function signApiToken (config: Config, tokenId: string, userId: string, expiresAt: Date | null): Promise<string> {
  const app = Fastify({ logger: false })
  try {
    await app.register(env, { config })
    await app.register(jwt)
    await app.register(tokens)
    await app.ready()
    return app.tokens.issueApi(tokenId, userId, expiresAt)
  } finally {
    await app.close()
  }
}
