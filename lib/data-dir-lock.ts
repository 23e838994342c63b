import { hostname } from 'node:os'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import lockfile from 'proper-lockfile'

/** The lock itself: a directory (mkdir is atomic, on a shared volume too) whose mtime its holder keeps fresh. */
export const LOCK_DIR = 'gatehouse-store.lock'
/** Who holds the lock, for the message a refused process prints. */
export const HOLDER_FILE = 'gatehouse-store.lock.json'
/** A lock not refreshed for this long belongs to a process that is gone. */
export const STALE_MS = 10_000

interface Holder { pid: number, host: string }

export class DataDirLockedError extends Error {
  constructor (dataDir: string, holder: Holder | null) {
    const who = holder ? `process ${holder.pid} on host ${holder.host}` : 'another process'
    super(`DATA_DIR ${dataDir} is in use by ${who} (a gatehouse server or CLI): the embedded store allows one process at a time. ` +
      `Stop that process first; the lock of a process that died frees itself within ${STALE_MS / 1000} s`)
    this.name = 'DataDirLockedError'
  }
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function readHolder (dataDir: string): Holder | null {
  try {
    const holder = JSON.parse(readFileSync(join(dataDir, HOLDER_FILE), 'utf8'))
    return typeof holder?.pid === 'number' && typeof holder?.host === 'string' ? holder : null
  } catch {
    return null
  }
}

export interface DataDirLock { release (): Promise<void> }

/**
 * Marks DATA_DIR as used by this process. Two processes writing one embedded store
 * corrupt it, and PGlite does not notice. proper-lockfile holds the lock as long as
 * this process refreshes it, so a live holder is refused whatever host it runs on
 * (two containers on one volume); only a lock nobody refreshed for STALE_MS is
 * taken over. Should the lock be lost anyway, the process stops rather than write.
 */
export async function lockDataDir (dataDir: string, { staleMs = STALE_MS } = {}): Promise<DataDirLock> {
  mkdirSync(dataDir, { recursive: true })
  const options = {
    lockfilePath: join(dataDir, LOCK_DIR),
    realpath: false,
    stale: staleMs,
    onCompromised (error: Error) {
      throw new Error(`lost the lock on DATA_DIR ${dataDir} (${error.message}): stopping so that two processes never write the embedded store`)
    }
  }
  let unlock: () => Promise<void>
  try {
    unlock = await lockfile.lock(dataDir, options)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ELOCKED') throw error
    const holder = readHolder(dataDir)
    // A holder that crashed on this host: its lock goes stale shortly, so wait for that instead of failing a restart.
    const crashedHere = holder !== null && holder.host === hostname() && holder.pid !== process.pid && !alive(holder.pid)
    if (!crashedHere) throw new DataDirLockedError(dataDir, holder)
    try {
      unlock = await lockfile.lock(dataDir, { ...options, retries: { retries: Math.ceil((staleMs * 1.5) / 250), factor: 1, minTimeout: 250, maxTimeout: 250 } })
    } catch (retryError) {
      if ((retryError as NodeJS.ErrnoException).code === 'ELOCKED') throw new DataDirLockedError(dataDir, readHolder(dataDir))
      throw retryError
    }
  }
  writeFileSync(join(dataDir, HOLDER_FILE), JSON.stringify({ pid: process.pid, host: hostname() } satisfies Holder))
  return {
    async release () {
      const holder = readHolder(dataDir)
      if (holder?.pid === process.pid && holder.host === hostname()) rmSync(join(dataDir, HOLDER_FILE), { force: true })
      // Already released, or lost (onCompromised has said so): nothing left to undo.
      await unlock().catch(() => {})
    }
  }
}
