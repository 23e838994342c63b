import { fork, type ChildProcess } from 'node:child_process'
import { cpus, freemem, loadavg, totalmem } from 'node:os'
import { execSync } from 'node:child_process'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FromClients, FromServer, SubjectKind, ToClients, ToServer } from './protocol.js'

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url))

/** A child process answering requests over IPC, one at a time. */
class Child<To, From extends { type: string }> {
  constructor (readonly process: ChildProcess) {}

  next<T extends From['type']> (type: T): Promise<Extract<From, { type: T }>> {
    return new Promise((resolve, reject) => {
      const onMessage = (message: From) => {
        if (message.type !== type) return
        cleanup()
        resolve(message as Extract<From, { type: T }>)
      }
      const onExit = (code: number | null) => {
        cleanup()
        reject(new Error(`benchmark process exited (${code}) while waiting for '${type}'`))
      }
      const cleanup = () => {
        this.process.off('message', onMessage)
        this.process.off('exit', onExit)
      }
      this.process.on('message', onMessage)
      this.process.on('exit', onExit)
    })
  }

  request<T extends From['type']> (message: To, type: T): Promise<Extract<From, { type: T }>> {
    const answer = this.next(type)
    this.process.send(message as object)
    return answer
  }
}

export type ServerProcess = Child<ToServer, FromServer> & { kind: SubjectKind, listening: Extract<FromServer, { type: 'listening' }> }
export type ClientProcess = Child<ToClients, FromClients>

/**
 * Starts a server of `kind` in its own process (with --expose-gc, so its memory is
 * read after a collection). BENCH_SERVER_FLAGS adds Node flags, e.g. `--cpu-prof`.
 */
export async function startServer (kind: SubjectKind, users: number, baselineDist?: string): Promise<ServerProcess> {
  const entry = kind === 'baseline' ? join(resolve(baselineDist ?? ''), 'bench/compare/server.js') : here('./server.js')
  const child = new Child<ToServer, FromServer>(fork(entry, ['--kind', kind === 'baseline' ? 'gatehouse' : kind, '--users', String(users)], {
    execArgv: ['--expose-gc', ...(process.env.BENCH_SERVER_FLAGS ?? '').split(' ').filter(Boolean)],
    // Each gatehouse seeds (and first clears) the same user ids: on Postgres the baseline needs a database of its own.
    env: kind === 'baseline' && process.env.BASELINE_DATABASE_URL ? { ...process.env, DATABASE_URL: process.env.BASELINE_DATABASE_URL } : process.env,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  }))
  const listening = await child.next('listening')
  return Object.assign(child, { kind, listening })
}

export function startClients (): ClientProcess {
  return new Child<ToClients, FromClients>(fork(here('./clients.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
}

/** Splits `items` into `parts` contiguous slices. */
export function split<T> (items: T[], parts: number): T[][] {
  const size = Math.ceil(items.length / parts)
  return Array.from({ length: parts }, (_, i) => items.slice(i * size, (i + 1) * size))
}

export const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms))

export function summary (xs: number[]) {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
  return { min: sorted[0], median, max: sorted[sorted.length - 1], runs: xs }
}

export function percentile (xs: number[], p: number): number {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]
}

/** What the figures were measured on: they mean little without it. */
export function machine () {
  let openFiles = 'unknown'
  try {
    openFiles = execSync('ulimit -n', { shell: '/bin/sh' }).toString().trim()
  } catch {}
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    freeMemoryGiB: Math.round(freemem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    openFileLimit: openFiles,
    loadAverageAtStart: loadavg().map(x => Math.round(x * 100) / 100)
  }
}
