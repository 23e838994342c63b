import { spawn } from 'node:child_process'
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { freePort } from './helpers/processes.js'

/**
 * The README's walkthroughs, run as a reader pastes them: every ```sh block marked
 * `<!-- walkthrough -->`, in order, in one bash, in a fresh copy of the project
 * (its own dist/ and ./.data, node_modules linked). Only the port changes, so runs
 * on a shared machine do not collide.
 */
const root = fileURLToPath(new URL('..', import.meta.url))
/** The whole walkthrough, two compilations included, on a loaded machine: a bound, not a speed check. */
const BOUND_MS = 270_000

export function walkthroughs (readme: string): string[] {
  return [...readme.matchAll(/<!-- walkthrough -->\n+```sh\n([\s\S]*?)```/g)].map(match => match[1])
}

/** Tokens never reach the test output, even when a step fails. */
const redact = (text: string) => text.replace(/eyJ[\w-]*\.[\w-]*\.[\w-]*/g, 'eyJ…')

function freshCopy (): string {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-readme-'))
  const skip = new Set(['node_modules', 'dist', '.data', '.tap', 'coverage', '.git', '.env'])
  cpSync(root, dir, { recursive: true, filter: source => !skip.has(source.slice(root.length).split('/')[0]) })
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir')
  return dir
}

t.test('the README walkthroughs work verbatim from a fresh copy', async t => {
  const blocks = walkthroughs(readFileSync(join(root, 'README.md'), 'utf8'))
  t.ok(blocks.length >= 5, 'the README marks its walkthroughs')

  const port = await freePort()
  const dir = freshCopy()
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // -u: a variable used before a block sets it fails the run, as it would confuse a reader.
  const script = ['set -euo pipefail', ...blocks].join('\n').replaceAll('localhost:3000', `localhost:${port}`)

  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    // A reader's shell: none of the service's settings, nor tap's loaders and coverage hooks.
    if (value !== undefined && !/^(DATA_DIR|DATABASE_URL|SUPABASE_|REDIS_URL|CLERK_|JWT_SECRET|NODE_ENV|LOG_LEVEL|HOST|PORT|NODE_OPTIONS|NODE_V8_COVERAGE|_TAPJS|TAP)/.test(key)) env[key] = value
  }
  env.PORT = String(port)

  // Its own process group: the server and the socket client it starts in the background go with it.
  const child = spawn('bash', ['-c', script], { cwd: dir, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  const killGroup = () => { try { process.kill(-child.pid!, 'SIGKILL') } catch {} }
  t.teardown(killGroup)
  let output = ''
  child.stdout.on('data', chunk => { output += chunk })
  child.stderr.on('data', chunk => { output += chunk })
  const timer = setTimeout(killGroup, BOUND_MS)
  const [code, signal] = await new Promise<[number | null, string | null]>(resolve => child.once('close', (c, s) => resolve([c, s])))
  clearTimeout(timer)

  // Assertions read the redacted output only: a failing one prints what it was given.
  const shown = redact(output)
  t.equal(signal, null, `finished within ${BOUND_MS} ms\n${shown}`)
  t.equal(code, 0, `every command succeeded\n${shown}`)
  t.notMatch(shown, /"success":\s*false/, 'no request was refused')
  t.notMatch(shown, /npm error|error TS/i, 'no npm or compiler errors')

  // Frames are flat objects; curl's answers end without a newline, so a frame may follow one on the same line.
  const frames = (shown.match(/\{"type":"[^"]+"[^{}]*\}/g) ?? []).map(frame => JSON.parse(frame))
  t.match(frames, [
    { type: 'ready', userId: 'bob' },
    { type: 'message', senderId: 'alice', content: 'sent while Bob was away' },
    { type: 'message', senderId: 'alice', content: 'Hello Bob' }
  ], 'the socket printed what the README says')
  t.match(shown, /\{"success":true,"acked":1\}/, 'the inbox walkthrough acknowledged a message')
  t.match(shown, /"users":\[\{"id":"64ff01"/, 'the admin found Dev User by e-mail')
  t.match(shown, /"sendsPerMinute":60,"sendQuota":10000\}/, 'the admin minted a token with send limits')
})
