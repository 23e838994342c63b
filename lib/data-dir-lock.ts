import { hostname } from 'node:os'
import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export const LOCK_FILE = 'gatehouse.lock'

export class DataDirLockedError extends Error {
  constructor (dataDir: string, pid: number) {
    super(`DATA_DIR ${dataDir} is in use by process ${pid} (a gatehouse server or CLI): the embedded store allows one process at a time. ` +
      `Stop that process first; if none is running, delete ${join(dataDir, LOCK_FILE)}`)
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

/**
 * Marks DATA_DIR as used by this process. Two processes writing one embedded store
 * corrupt it, and PGlite does not notice, so a live holder on this host is refused.
 * A lock left by a crash (dead pid, or another host's container) is taken over.
 */
export function lockDataDir (dataDir: string): { release (): void } {
  mkdirSync(dataDir, { recursive: true })
  const file = join(dataDir, LOCK_FILE)
  const mine = JSON.stringify({ pid: process.pid, host: hostname() })
  try {
    writeFileSync(file, mine, { flag: 'wx' })
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    let holder: { pid?: unknown, host?: unknown } = {}
    try { holder = JSON.parse(readFileSync(file, 'utf8')) } catch {}
    if (typeof holder.pid === 'number' && holder.pid !== process.pid && holder.host === hostname() && alive(holder.pid)) {
      throw new DataDirLockedError(dataDir, holder.pid)
    }
    writeFileSync(file, mine)
  }
  return {
    release () {
      try {
        if (readFileSync(file, 'utf8') === mine) unlinkSync(file)
      } catch {}
    }
  }
}
