import { fork, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { lockDataDir } from '../../../../lib/data-dir-lock.js'
import type { RpcDriver, SqlAccess } from '../driver.js'
import type { EmbeddedProcessMessage, EmbeddedProcessOptions } from './embedded-process.js'
import { createPostgresDriver, isPostgresUnavailable, type PostgresDriver } from './postgres.js'

// The entry beside this file: .js once built, .ts under the test runner's loader.
const ENTRY = fileURLToPath(new URL(`./embedded-process${extname(fileURLToPath(import.meta.url))}`, import.meta.url))
/**
 * One connection: PGlite is a single Postgres session, so statements of two
 * connections interleaved by pglite-socket share its unnamed portal and prepared
 * statements ("portal does not exist"). It runs one statement at a time anyway.
 */
const POOL_SIZE = 1
const RESTART_MAX_DELAY_MS = 5_000

/**
 * The serving store process is sized for one service at rest (measured with `npm run
 * bench:startup-memory`). V8 would grow its young generation to 32 MiB during start;
 * one thread does the work (it runs one statement at a time), so no background
 * compile or GC thread keeps a malloc arena of its own; and glibc returns freed
 * blocks over 16 KiB to the system instead of keeping the ~30 MiB compiling
 * Postgres' WebAssembly left behind. `--expose-gc` lets it collect once it has started
 * (embedded-process.ts).
 */
const STORE_NODE_FLAGS = ['--max-semi-space-size=1', '--single-threaded', '--expose-gc']
const STORE_ENV = { MALLOC_MMAP_THRESHOLD_: '16384' }

export interface EmbeddedOptions {
  /** DATA_DIR, or null for a store in memory (tests). */
  dataDir: string | null
  /** A dump file to start an in-memory store from (tests reuse one migrated store). */
  loadDataDir?: string
  timeoutMs: number
  /** Let V8 optimize the store's WebAssembly: faster bulk writes, more resident memory. */
  optimize?: boolean
  /** Told when the store process ends unexpectedly and is restarted. */
  onRestart?: (reason: string) => void
}

export interface EmbeddedDriver extends RpcDriver {
  sql: SqlAccess
  /** The store process's pid (for measurements and tests). */
  readonly pid: number | undefined
  /** Migrations the store process applied when it first started (it migrates itself). */
  readonly migratedAtStart: readonly string[]
}

/**
 * The embedded store (PGlite) in a child process, reached through postgres.js over a
 * Unix socket: queries never block this event loop, and the store timeout is enforced
 * here, since PGlite cannot cancel a statement: a call still running at the deadline
 * means the store is stuck, so its process is killed (the call's transaction never
 * commits) and restarted, and the call answers "unavailable". This process holds the
 * DATA_DIR lock for the store's whole life, restarts included.
 */
export async function createEmbeddedDriver (options: EmbeddedOptions): Promise<EmbeddedDriver> {
  const { dataDir, timeoutMs } = options
  const lock = dataDir ? await lockDataDir(dataDir) : null
  const socketDir = await mkdtemp(join(tmpdir(), 'gatehouse-store-'))
  const base: EmbeddedProcessOptions = {
    dataDir,
    loadDataDir: options.loadDataDir ?? null,
    socketPath: join(socketDir, '.s.PGSQL.5432'),
    maxConnections: POOL_SIZE + 2,
    optimize: options.optimize ?? false,
    prepareOnly: false
  }
  let child: ChildProcess | undefined
  let closing = false
  let restarts = 0
  let restartTimer: NodeJS.Timeout | undefined

  const cleanup = async () => {
    await rm(socketDir, { recursive: true, force: true })
    await lock?.release()
  }

  const migratedAtStart: string[] = []
  const start = async (prepareOnly: boolean): Promise<ChildProcess> => {
    // A killed store leaves its socket file behind; listening on it again would fail.
    await rm(base.socketPath, { force: true })
    const proc = fork(ENTRY, [JSON.stringify({ ...base, prepareOnly })], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // The inherited flags too: the test runner starts it through its TypeScript loader.
      // The short-lived process that creates a DATA_DIR keeps the defaults: it exits, and they make it faster.
      execArgv: prepareOnly ? process.execArgv : [...process.execArgv, ...STORE_NODE_FLAGS],
      env: prepareOnly ? process.env : { ...STORE_ENV, ...process.env }
    })
    await new Promise<void>((resolve, reject) => {
      const onMessage = (message: EmbeddedProcessMessage) => {
        if (message.type === 'ready') {
          migratedAtStart.push(...message.applied)
          resolve()
        } else reject(new Error(`embedded store: ${message.message}`))
      }
      const onExit = (code: number | null, signal: string | null) => reject(new Error(`embedded store process exited during start (${signal ?? `code ${code}`})`))
      proc.on('message', onMessage)
      proc.once('exit', onExit)
      proc.once('error', reject)
    }).finally(() => {
      proc.removeAllListeners('message')
      proc.removeAllListeners('exit')
      proc.removeAllListeners('error')
    })
    return proc
  }

  // One connection pool per store process: a pool is never left retrying a dead socket,
  // and calls made while the store restarts fail at once as unavailable.
  let pg: PostgresDriver | undefined
  const connect = () => createPostgresDriver('postgres://postgres@localhost/postgres', { timeoutMs, max: POOL_SIZE, path: base.socketPath })
  const current = (): PostgresDriver => {
    if (!pg) throw new EmbeddedStoreDownError()
    return pg
  }

  const supervise = (proc: ChildProcess) => {
    child = proc
    pg = connect()
    const pool = pg
    proc.once('exit', (code, signal) => {
      if (child === proc) child = undefined
      if (pg === pool) pg = undefined
      pool.close(0).catch(() => {})
      if (closing) return
      const reason = `embedded store process ended (${signal ?? `code ${code}`})`
      options.onRestart?.(reason)
      scheduleRestart()
    })
  }

  /** The store is stuck in a statement PGlite cannot cancel: end its connections, then the process. */
  const kill = async (proc: ChildProcess, pool: PostgresDriver) => {
    if (pg === pool) pg = undefined
    await pool.close(0)
    proc.kill('SIGKILL')
  }

  const scheduleRestart = () => {
    const delay = Math.min(50 * 2 ** restarts, RESTART_MAX_DELAY_MS)
    restarts++
    restartTimer = setTimeout(() => {
      restartTimer = undefined
      start(false).then(proc => {
        if (closing) { proc.kill('SIGKILL'); return }
        restarts = 0
        supervise(proc)
      }, (error: unknown) => {
        if (closing) return
        options.onRestart?.((error as Error).message)
        scheduleRestart()
      })
    }, delay)
    restartTimer.unref()
  }

  try {
    // A new DATA_DIR: initdb and the first migration in a process that then exits, so
    // the serving process does not keep their memory peak.
    if (dataDir && !existsSync(join(dataDir, 'PG_VERSION'))) {
      const prepare = await start(true)
      if (prepare.exitCode === null) await new Promise(resolve => prepare.once('exit', resolve))
    }
    supervise(await start(false))
  } catch (error) {
    await cleanup()
    throw error
  }

  const sql: SqlAccess = {
    exec: async (script) => { await current().sql.exec(script) },
    query: async (text, values) => await current().sql.query(text, values),
    transaction: async (fn) => await current().sql.transaction(fn)
  }

  return {
    kind: 'pglite',
    get pid () { return child?.pid },
    migratedAtStart,
    async call (fn, args, signal) {
      const pool = current()
      const proc = child
      const work = pool.call(fn, args, signal)
      // Calls still waiting for a connection are withdrawn at the deadline by the
      // postgres driver; one still unsettled shortly after is running and stuck. It is
      // answered as unavailable then, whenever the killed connection gets round to failing.
      let stuck: NodeJS.Timeout | undefined
      const killed = new Promise<never>((_resolve, reject) => {
        stuck = setTimeout(() => {
          reject(new EmbeddedStoreDownError())
          if (proc) kill(proc, pool).catch(() => {})
        }, timeoutMs + 100)
      })
      work.catch(() => {})
      try {
        return await Promise.race([work, killed])
      } finally {
        clearTimeout(stuck)
      }
    },
    sql,
    // While the store process restarts its socket is missing or refuses connections.
    isUnavailable: (error) => error instanceof EmbeddedStoreDownError || isPostgresUnavailable(error) ||
      (error as { code?: unknown })?.code === 'ENOENT',
    async close () {
      if (closing) return
      closing = true
      clearTimeout(restartTimer)
      await pg?.close()
      const proc = child
      if (proc && proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise(resolve => proc.once('exit', resolve))
        // Closing the channel asks the store to stop and checkpoint; a hung one is killed.
        proc.disconnect()
        const force = setTimeout(() => proc.kill('SIGKILL'), 10_000)
        await exited
        clearTimeout(force)
      }
      await cleanup()
    }
  }
}

class EmbeddedStoreDownError extends Error {
  constructor () { super('the embedded store is restarting') }
}
