import { ConfigError, loadConfig } from '../lib/config.js'
import { ApiError } from '../lib/errors.js'
import { DataDirLockedError } from '../lib/data-dir-lock.js'
import { CliError, HELP, parseCommand, UsageError } from './args.js'

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
    const config = loadConfig(environment)
    // Storage drivers and Fastify load only once the arguments are known to be good.
    const { execute } = await import('./commands.js')
    await execute(command, config, io)
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

/** One line without a stack trace; a dependency failure names its cause. */
function describe (error: unknown): string {
  if (error instanceof ConfigError) return `invalid configuration: ${error.problems.join('; ')}`
  if (error instanceof CliError || error instanceof DataDirLockedError) return error.message
  if (error instanceof ApiError) {
    const cause = error.cause instanceof Error ? error.cause.message : undefined
    return cause ? `${error.message} (${cause})` : error.message
  }
  return `storage error: ${(error instanceof Error ? error.message : String(error)).split('\n')[0]}`
}
