import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import t, { type Test } from 'tap'
import { DataDirLockedError, HOLDER_FILE, LOCK_DIR, lockDataDir } from '../../lib/data-dir-lock.js'

/** Short enough to keep the suite quick, long enough for an idle child to refresh its lock under load. */
const STALE_MS = 4000

function dataDir (t: Test) {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-lock-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

const holderFile = (dir: string) => JSON.parse(readFileSync(join(dir, HOLDER_FILE), 'utf8'))

/** Another process holding DATA_DIR with the real lock, as a second server would. */
async function holdInChild (t: Test, dir: string): Promise<ChildProcess> {
  const module = pathToFileURL(fileURLToPath(new URL('../../lib/data-dir-lock.js', import.meta.url))).href
  const code = `
    import { lockDataDir } from '${module}'
    await lockDataDir(process.env.LOCKED_DIR, { staleMs: Number(process.env.STALE_MS) })
    console.log('locked')
    setInterval(() => {}, 60_000)`
  const loader = process.execArgv.filter(arg => arg.includes('typescript'))
  const child = spawn(process.execPath, [...loader, '--input-type=module', '-e', code], {
    env: { ...process.env, NODE_OPTIONS: '', LOCKED_DIR: dir, STALE_MS: String(STALE_MS) },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  t.after(() => { child.kill('SIGKILL') })
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', chunk => { if (String(chunk).includes('locked')) resolve() })
    child.once('exit', code => reject(new Error(`the holder exited with ${code}`)))
  })
  return child
}

const exited = (child: ChildProcess) => new Promise(resolve => child.once('exit', resolve))

t.test('a live holder keeps others out, even when its lock file names another host', async t => {
  const dir = dataDir(t)
  const child = await holdInChild(t, dir)
  t.same(holderFile(dir), { pid: child.pid, host: hostname() })
  await t.rejects(lockDataDir(dir, { staleMs: STALE_MS }), DataDirLockedError)
  await t.rejects(lockDataDir(dir, { staleMs: STALE_MS }), { message: new RegExp(`in use by process ${child.pid} on host ${hostname()}`) })

  // As a second container on the same volume sees it: the holder's pid means nothing on this host.
  writeFileSync(join(dir, HOLDER_FILE), JSON.stringify({ pid: 1, host: 'some-other-container' }))
  await t.rejects(lockDataDir(dir, { staleMs: STALE_MS }), { message: /in use by process 1 on host some-other-container/ })
  await new Promise(resolve => setTimeout(resolve, STALE_MS * 1.5))
  await t.rejects(lockDataDir(dir, { staleMs: STALE_MS }), DataDirLockedError, 'still refused after the stale period: the holder keeps its lock fresh')

  const gone = exited(child)
  child.kill('SIGTERM')
  await gone
  const lock = await lockDataDir(dir, { staleMs: STALE_MS })
  t.same(holderFile(dir), { pid: process.pid, host: hostname() }, 'a holder that stopped cleanly left the lock free')
  await lock.release()
  t.notOk(existsSync(join(dir, LOCK_DIR)), 'released')
  t.notOk(existsSync(join(dir, HOLDER_FILE)))
})

t.test('a holder that crashed on this host is taken over once its lock goes stale', async t => {
  const dir = dataDir(t)
  const child = await holdInChild(t, dir)
  const gone = exited(child)
  child.kill('SIGKILL')
  await gone
  t.ok(existsSync(join(dir, LOCK_DIR)), 'the crash left the lock behind')
  const lock = await lockDataDir(dir, { staleMs: STALE_MS })
  t.same(holderFile(dir), { pid: process.pid, host: hostname() })
  await lock.release()
})

t.test('a lock left on another host is refused while fresh and taken over once stale', async t => {
  const dir = dataDir(t)
  mkdirSync(join(dir, LOCK_DIR))
  writeFileSync(join(dir, HOLDER_FILE), JSON.stringify({ pid: 4242, host: 'some-other-container' }))
  await t.rejects(lockDataDir(dir, { staleMs: STALE_MS }), { message: /process 4242 on host some-other-container/ })

  const longAgo = new Date(Date.now() - 60_000)
  utimesSync(join(dir, LOCK_DIR), longAgo, longAgo)
  const lock = await lockDataDir(dir, { staleMs: STALE_MS })
  t.same(holderFile(dir), { pid: process.pid, host: hostname() })
  await lock.release()
})

t.test('one process cannot take the lock it already holds, and may take it again after release', async t => {
  const dir = dataDir(t)
  const lock = await lockDataDir(join(dir, 'nested'))
  await t.rejects(lockDataDir(join(dir, 'nested')), DataDirLockedError)
  await lock.release()
  await lock.release()
  const again = await lockDataDir(join(dir, 'nested'))
  await again.release()
})
