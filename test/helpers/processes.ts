import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { Test } from 'tap'
import { Redis } from 'ioredis'
import { TEST_SECRET } from './app.js'

const run = promisify(execFile)
const root = fileURLToPath(new URL('../..', import.meta.url))
/** Starting a process on a loaded machine; a bound, never an assertion on speed. */
const START_MS = 60_000

/**
 * Compiles the server, as the image build does, into a directory of this test
 * process's own (so test files running at once do not write the same files);
 * removed when `t` ends. Type errors are the typecheck's job.
 */
export async function buildDist (t: Test, entries = ['server.ts']): Promise<string> {
  const outDir = join(root, '.tap', `server-build-${process.pid}`)
  mkdirSync(outDir, { recursive: true })
  t.teardown(() => rmSync(outDir, { recursive: true, force: true }))
  writeFileSync(join(outDir, 'tsconfig.json'), JSON.stringify({
    extends: join(root, 'tsconfig.json'),
    compilerOptions: { noEmit: false, noCheck: true, incremental: false, outDir, rootDir: root },
    files: entries.map(entry => join(root, entry)),
    include: []
  }))
  await run(process.execPath, [createRequire(import.meta.url).resolve('typescript/bin/tsc'), '-p', join(outDir, 'tsconfig.json')])
  return outDir
}

/** A port nobody listens on right now. */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

async function until (what: string, check: () => Promise<boolean>, ms = START_MS): Promise<void> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  throw new Error(`${what} within ${ms} ms`)
}

/** A redis-server of this test only (never the shared one), on a port of its own; it can be killed and started again. */
export interface PrivateRedis {
  url: string
  kill (): Promise<void>
  start (): Promise<void>
}

export async function privateRedis (t: Test): Promise<PrivateRedis> {
  const port = await freePort()
  const url = `redis://127.0.0.1:${port}`
  let child: ChildProcess | null = null
  const kill = async () => {
    if (child === null) return
    const exited = new Promise(resolve => child!.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
    child = null
  }
  const start = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
    await until('redis-server answers', async () => {
      const probe = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 })
      probe.on('error', () => {})
      try {
        await probe.connect()
        return (await probe.ping()) === 'PONG'
      } finally {
        probe.disconnect()
      }
    })
  }
  await start()
  t.after(kill)
  return { url, kill, start }
}

/** A gatehouse process started as the image starts it (`node dist/server.js`, production settings), from `buildDist`'s output. */
export interface Gatehouse {
  url: string
  /** Every line the process wrote, stdout and stderr. */
  readonly output: string[]
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>
  signal (name: NodeJS.Signals): void
}

export async function startGatehouse (t: Test, dist: string, env: Record<string, string>): Promise<Gatehouse> {
  const output: string[] = []
  const child = spawn(process.execPath, [join(dist, 'server.js')], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH,
      NODE_ENV: 'production',
      JWT_SECRET: TEST_SECRET,
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'info',
      ...env
    }
  })
  const exited = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
  let listening: (url: string) => void
  const url = new Promise<string>(resolve => { listening = resolve })
  for (const stream of [child.stdout, child.stderr]) {
    let partial = ''
    stream.setEncoding('utf8')
    stream.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n')
      partial = lines.pop() as string
      for (const line of lines) {
        output.push(line)
        const match = /"msg":"Server listening at (http:\/\/127\.0\.0\.1:\d+)"/.exec(line)
        if (match) listening(match[1])
      }
    })
  }
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  })
  let timer: NodeJS.Timeout | undefined
  const started = await Promise.race([
    url,
    exited.then(code => { throw new Error(`gatehouse exited with ${code} before listening:\n${output.join('\n')}`) }),
    new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`gatehouse did not listen within ${START_MS} ms:\n${output.join('\n')}`)), START_MS) })
  ]).finally(() => clearTimeout(timer))
  return { url: started, output, exited, signal: name => { child.kill(name) } }
}

/** Polls until `check` holds; for states that settle by themselves (a reconnect), bounded. */
export const eventually = until

/** The newest Postgres the machine has, as .ci/run picks it. */
const PG_BIN = (() => {
  const versions = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').filter(v => /^\d+$/.test(v)) : []
  return `/usr/lib/postgresql/${versions.sort((a, b) => Number(a) - Number(b)).at(-1) ?? '15'}/bin`
})()

/** A Postgres cluster of this test only (never the shared server), in a temp dir; it can be stopped and started again. */
export interface PrivatePostgres {
  url: string
  stop (): Promise<void>
  start (): Promise<void>
}

export async function privatePostgres (t: Test): Promise<PrivatePostgres> {
  const port = await freePort()
  const dir = (await run('mktemp', ['-d', '/tmp/gatehouse-pg-XXXXXX'])).stdout.trim()
  // Postgres refuses to run as root: the cluster belongs to the postgres user when the tests run as root.
  const asOwner = (command: string, args: string[]) => process.getuid?.() === 0
    ? run('runuser', ['-u', 'postgres', '--', command, ...args])
    : run(command, args)
  if (process.getuid?.() === 0) await run('chown', ['postgres', dir])
  await asOwner(`${PG_BIN}/initdb`, ['-D', `${dir}/data`, '-U', 'gatehouse', '--auth=trust', '-E', 'UTF8', '--no-sync'])
  const pgctl = (...args: string[]) => asOwner(`${PG_BIN}/pg_ctl`, ['-D', `${dir}/data`, '-w', ...args])
  const start = async () => {
    await pgctl('-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`, '-l', `${dir}/log`, 'start')
  }
  const stop = async () => { await pgctl('-m', 'fast', 'stop') }
  await start()
  t.after(async () => {
    await stop().catch(() => {})
    await run('rm', ['-rf', dir])
  })
  return { url: `postgres://gatehouse@127.0.0.1:${port}/postgres`, stop, start }
}
