import { parseArgs } from 'node:util'
import type { UserInput } from '../schemas/users.js'
import { isId } from '../schemas/common.js'
import { parseIsoDate } from '../lib/dates.js'
import { API_SCOPES, isApiScope, MAX_SEND_LIMIT, type ApiScope } from '../schemas/tokens.js'

/** Bad arguments: the CLI prints one line and exits with 2. */
export class UsageError extends Error {}

/** A failure the operator can act on (unknown user, unmigrated database): one line, exit 1. */
export class CliError extends Error {}

export type Command =
  | { name: 'help' }
  | { name: 'migrate' }
  | { name: 'users add', user: UserInput & { id: string } }
  | { name: 'users list' }
  | { name: 'users delete', userId: string }
  | { name: 'tokens mint', userId: string, expiresAt: Date | null, label: string | null, scopes: ApiScope[] | null, sendsPerMinute: number | null, sendQuota: number | null }
  | { name: 'tokens access', userId: string }
  | { name: 'tokens revoke', tokenId: string }
  | { name: 'tokens list', userId: string | null }
  | { name: 'keys list' }
  | { name: 'keys rotate' }
  | { name: 'keys retire', kid: string }

type Options = Record<string, { type: 'string' | 'boolean' }>

/** Each command's options and positional arguments, as node:util parseArgs takes them. */
const COMMANDS: Record<Exclude<Command['name'], 'help'>, { options: Options, positionals: string[] }> = {
  migrate: { options: {}, positionals: [] },
  'users add': {
    options: {
      id: { type: 'string' },
      email: { type: 'string' },
      name: { type: 'string' },
      'clerk-id': { type: 'string' },
      role: { type: 'string' },
      org: { type: 'string' },
      plan: { type: 'string' },
      credits: { type: 'string' }
    },
    positionals: []
  },
  'users list': { options: {}, positionals: [] },
  'users delete': { options: {}, positionals: ['userId'] },
  'tokens mint': { options: { user: { type: 'string' }, expires: { type: 'string' }, name: { type: 'string' }, scopes: { type: 'string' }, 'sends-per-minute': { type: 'string' }, 'send-quota': { type: 'string' } }, positionals: [] },
  'tokens access': { options: { user: { type: 'string' } }, positionals: [] },
  'tokens revoke': { options: {}, positionals: ['tokenId'] },
  'tokens list': { options: { user: { type: 'string' } }, positionals: [] },
  'keys list': { options: {}, positionals: [] },
  'keys rotate': { options: {}, positionals: [] },
  'keys retire': { options: {}, positionals: ['kid'] }
}

const EMAIL = /^[^\s@]+@[^\s@]+$/
const MAX_CREDITS = 2147483647

/** Turns argv into one validated command, or throws a UsageError naming the problem. */
export function parseCommand (argv: string[]): Command {
  if (argv.length === 0) throw new UsageError('no command given')
  if (argv[0] === 'help' || argv.includes('--help') || argv.includes('-h')) return { name: 'help' }

  const group = argv[0] === 'users' || argv[0] === 'tokens' || argv[0] === 'keys'
  if (group && argv[1] === undefined) throw new UsageError(`"${argv[0]}" needs a subcommand`)
  const name = group ? `${argv[0]} ${argv[1]}` : argv[0]
  const spec = COMMANDS[name as keyof typeof COMMANDS]
  if (!spec) throw new UsageError(`unknown command "${name}"`)

  let parsed
  try {
    parsed = parseArgs({ args: argv.slice(group ? 2 : 1), options: spec.options, strict: true, allowPositionals: true })
  } catch (error) {
    // node's messages run on with advice about `--`; the first sentence names the problem.
    throw new UsageError(`${name}: ${(error as Error).message.split(/\.\s/)[0].replace(/\.$/, '')}`)
  }
  const { positionals } = parsed
  if (positionals.length > spec.positionals.length) throw new UsageError(`${name}: unexpected argument "${positionals[spec.positionals.length]}"`)
  if (positionals.length < spec.positionals.length) throw new UsageError(`${name}: missing <${spec.positionals[positionals.length]}>`)
  const values = parsed.values as Record<string, string | undefined>
  const text = (option: string, { required = false, max = 200 } = {}) => {
    const value = values[option]
    if (value === undefined) {
      if (required) throw new UsageError(`${name}: --${option} is required`)
      return undefined
    }
    if (value.trim() === '' || value.length > max) throw new UsageError(`${name}: --${option} must be 1 to ${max} characters`)
    return value.trim()
  }
  const id = (option: string, required: boolean) => {
    const value = text(option, { required, max: 128 })
    if (value !== undefined && !isId(value)) throw new UsageError(`${name}: --${option} may only contain letters, digits and _ . : @ -`)
    return value
  }

  switch (name) {
    case 'users add': {
      const user: UserInput & { id: string } = {
        id: id('id', true) as string,
        email: text('email', { required: true, max: 320 }),
        name: text('name', { required: true })
      }
      if (!EMAIL.test(user.email as string)) throw new UsageError(`${name}: --email is not an email address`)
      const clerkId = text('clerk-id', { max: 128 })
      if (clerkId !== undefined) user.clerk_id = clerkId
      const role = text('role')
      if (role !== undefined) {
        if (role !== 'admin' && role !== 'user') throw new UsageError(`${name}: --role must be admin or user`)
        user.role = role
      }
      const org = id('org', false)
      if (org !== undefined) user.organization_id = org
      const plan = text('plan', { max: 64 })
      if (plan !== undefined) user.plan_type = plan
      const credits = text('credits', { max: 20 })
      if (credits !== undefined) {
        if (!/^\d+$/.test(credits) || Number(credits) > MAX_CREDITS) throw new UsageError(`${name}: --credits must be a whole number from 0 to ${MAX_CREDITS}`)
        user.credits = Number(credits)
      }
      return { name, user }
    }
    case 'tokens mint': {
      const expires = text('expires', { max: 64 })
      let expiresAt: Date | null = null
      if (expires !== undefined) {
        expiresAt = parseIsoDate(expires)
        if (expiresAt === null) throw new UsageError(`${name}: --expires must be an ISO-8601 date, e.g. 2030-01-31T00:00:00Z`)
        if (expiresAt.getTime() <= Date.now()) throw new UsageError(`${name}: --expires must be in the future`)
      }
      const scopeList = text('scopes', { max: 1000 })
      let scopes: ApiScope[] | null = null
      if (scopeList !== undefined) {
        const named = [...new Set(scopeList.split(',').map(scope => scope.trim()))]
        const unknown = named.filter(scope => !isApiScope(scope))
        if (unknown.length > 0) throw new UsageError(`${name}: unknown scope "${unknown[0]}" (scopes: ${API_SCOPES.join(', ')})`)
        scopes = named as ApiScope[]
      }
      /** A whole number from 1 to MAX_SEND_LIMIT, as the HTTP route takes it. */
      const limit = (option: string): number | null => {
        const value = text(option, { max: 20 })
        if (value === undefined) return null
        if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > MAX_SEND_LIMIT) {
          throw new UsageError(`${name}: --${option} must be a whole number from 1 to ${MAX_SEND_LIMIT}`)
        }
        return Number(value)
      }
      return {
        name,
        userId: id('user', true) as string,
        expiresAt,
        label: text('name') ?? null,
        scopes,
        sendsPerMinute: limit('sends-per-minute'),
        sendQuota: limit('send-quota')
      }
    }
    case 'tokens access': return { name, userId: id('user', true) as string }
    case 'users delete': {
      const userId = positionals[0]
      if (!isId(userId)) throw new UsageError(`${name}: "${userId}" is not a user id`)
      return { name, userId }
    }
    case 'tokens revoke': {
      const tokenId = positionals[0]
      if (!isId(tokenId)) throw new UsageError(`${name}: "${tokenId}" is not a token id`)
      return { name, tokenId }
    }
    case 'tokens list': return { name, userId: id('user', false) ?? null }
    case 'keys retire': {
      const kid = positionals[0]
      if (!isId(kid)) throw new UsageError(`${name}: "${kid}" is not a key id`)
      return { name, kid }
    }
    default: return { name } as Command
  }
}

export const HELP = `gatehouse operator commands

Usage: npm run -s cli -- <command> [options]

  migrate
      Applies supabase/migrations to DATABASE_URL, or to the embedded store in
      DATA_DIR. For a Supabase project set DATABASE_URL to the project's Postgres
      connection string, or run \`supabase db push\`.

  users add --id <id> --email <email> --name <name>
            [--clerk-id <clerk user id>] [--role admin|user] [--org <organization id>]
            [--plan <plan type>] [--credits <n>]
      Creates the user, or updates the one with this id. Prints it as JSON.
      Users who sign in with Clerk are normally created by the Clerk webhook.

  users list
      Prints every user as JSON (needs DATABASE_URL or the embedded store).

  users delete <user id>
      Deletes the user with their tokens, templates and inbox, and closes their
      open sockets with 4003 on every server process (through REDIS_URL; without
      it, sockets of a server running elsewhere stay open until they reconnect).

  tokens mint --user <user id> [--expires <ISO-8601 date>] [--name <label>] [--scopes <a,b,...>]
              [--sends-per-minute <n>] [--send-quota <n>]
      Mints an API token for the user and prints only the token, so that
      TOKEN=$(npm run -s cli -- tokens mint --user admin) works. Without
      --expires the token never expires; revoke it when it is no longer needed.
      Without --scopes the token may do whatever the user may; with them, only
      that (${API_SCOPES.join(', ')}).
      --sends-per-minute limits the token's send requests a minute (on every
      process together with REDIS_URL); --send-quota is how many send requests it
      may ever make (one per accepted request, whatever its recipients).

  tokens access --user <user id>
      Prints an access token for the user, as POST /api/dashboard-token/generate
      would issue it after a Clerk sign-in (ACCESS_TOKEN_TTL). For trying the
      WebSocket ticket and the inbox without Clerk.

  tokens list [--user <user id>]
      Prints API token records as JSON (never the tokens themselves).

  tokens revoke <token id>
      Revokes an API token at once. Prints its record as JSON.

  keys list
      Prints the signing keys (JWT_ALGORITHM=ES256) as JSON: kid, state (next,
      current, previous, retired) and dates; never a private key.

  keys rotate
      The next key starts signing, the current one becomes previous (its tokens
      verify until they expire) and a new next key is published. Every server
      uses the new key within a second with REDIS_URL, else within 10 seconds.
      Rotate no more often than every 5 minutes (the JWKS cache lifetime).

  keys retire <kid>
      Retires a previous key: tokens it signed are refused from then on.

  help
      Shows this text.

Configuration comes from the same environment as the server (DATA_DIR,
DATABASE_URL, SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY, JWT_SECRET, ...). Tokens
are signed with JWT_SECRET, so the CLI and the server must share it; without
JWT_SECRET (development only) both use the one generated in DATA_DIR.

The embedded store (no DATABASE_URL or SUPABASE_URL) is used by one process at a
time: while the server runs on a DATA_DIR the CLI refuses to open it. Stop the
server first, or mint tokens through POST /api/admin/tokens.

Exit codes: 0 success, 1 failure (unknown user or token, storage error), 2 bad arguments.
`
