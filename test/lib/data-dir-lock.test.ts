import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { DataDirLockedError, LOCK_FILE, lockDataDir } from '../../lib/data-dir-lock.js'

function dataDir (t: Test) {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-lock-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}
const holder = (dir: string, pid: number, host = hostname()) => writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid, host }))

t.test('a live process on this host keeps others out until it lets go', async t => {
  const dir = dataDir(t)
  const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' })
  t.after(() => { other.kill() })
  holder(dir, other.pid!)
  t.throws(() => lockDataDir(dir), DataDirLockedError)
  t.throws(() => lockDataDir(dir), { message: new RegExp(`in use by process ${other.pid}`) })

  await new Promise(resolve => { other.once('exit', resolve); other.kill() })
  const lock = lockDataDir(dir)
  t.pass('a dead holder is taken over')
  lock.release()
  t.notOk(existsSync(join(dir, LOCK_FILE)), 'released')
})

t.test('a lock from another host, or from this very process, is taken over', async t => {
  const dir = dataDir(t)
  holder(dir, process.pid)
  lockDataDir(dir).release()
  holder(dir, 1, 'some-other-container')
  const lock = lockDataDir(dir)
  t.match(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')), { pid: process.pid })
  lock.release()
})

t.test('releasing does not remove a lock someone else took since', async t => {
  const dir = dataDir(t)
  const lock = lockDataDir(join(dir, 'nested'))
  holder(join(dir, 'nested'), 4242, 'elsewhere')
  lock.release()
  t.ok(existsSync(join(dir, 'nested', LOCK_FILE)))
})
