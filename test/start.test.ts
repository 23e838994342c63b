import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { builtinModules, createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import type { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { TEST_SECRET } from './helpers/app.js'
import { freshDatabase, requireDatabaseUrl } from './helpers/backends.js'
import { createPostgresDriver } from '../plugins/app/supabase/drivers/postgres.js'
import { migrate } from '../plugins/app/supabase/migrate.js'

/**
 * The container's start path, as the Dockerfile runs it: the project compiled with
 * tsconfig.build.json, `node dist/server.js` with production settings and production
 * dependencies only, stopped with SIGTERM.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url))

/** Compiles as `npm run build` does, into a directory of this run's own (concurrent runs do not share dist/). */
function build (): string {
  const outDir = join(ROOT, '.tap', `start-build-${process.pid}`)
  mkdirSync(outDir, { recursive: true })
  t.teardown(() => rmSync(outDir, { recursive: true, force: true }))
  const tsconfig = join(outDir, 'tsconfig.json')
  writeFileSync(tsconfig, JSON.stringify({
    extends: join(ROOT, 'tsconfig.build.json'),
    compilerOptions: { noCheck: true, incremental: false, outDir, rootDir: ROOT },
    include: ['*.ts', 'lib', 'plugins', 'routes', 'schemas', 'client'].map(p => join(ROOT, p))
  }))
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  const result = spawnSync(process.execPath, [tsc, '-p', tsconfig], { encoding: 'utf8' })
  if (!existsSync(join(outDir, 'server.js'))) throw new Error(`the server did not compile: ${result.stdout}${result.stderr}`)
  return outDir
}
const DIST = build()

function jsFiles (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter(entry => entry.isFile() && entry.name.endsWith('.js'))
    .map(entry => join(entry.parentPath, entry.name))
}

/** The package a bare specifier names: `@scope/name/sub` → `@scope/name`. */
const packageOf = (specifier: string) => specifier.split('/').slice(0, specifier.startsWith('@') ? 2 : 1).join('/')

t.test('the compiled service imports production dependencies only', async t => {
  const { dependencies } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }
  const builtins = new Set(builtinModules)
  const outside: string[] = []
  for (const file of jsFiles(DIST)) {
    const source = readFileSync(file, 'utf8')
    for (const [, specifier] of source.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"]([^'"]+)['"]/g)) {
      if (specifier.startsWith('.') || specifier.startsWith('node:') || builtins.has(specifier)) continue
      if (!(packageOf(specifier) in dependencies)) outside.push(`${relative(DIST, file)}: ${specifier}`)
    }
  }
  t.same(outside, [], 'a package outside `dependencies` is missing from the image (npm ci --omit=dev)')
})

interface Server {
  child: ChildProcessByStdio<null, Readable, Readable>
  url: string
  lines: string[]
  stderr: () => string
  exited: Promise<number | null>
}

/** Starts `node dist/server.js` with only `env` as configuration; resolves once it listens. */
async function start (t: Test, env: Record<string, string>): Promise<Server> {
  const childEnv: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, PORT: '0', HOST: '127.0.0.1', ...env }
  const child = spawn(process.execPath, [join(DIST, 'server.js')], { cwd: ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  const exited = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
  const lines: string[] = []
  let stderr = ''
  let pending = ''
  child.stderr.on('data', chunk => { stderr += chunk })
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', chunk => {
      pending += chunk
      const parts = pending.split('\n')
      pending = parts.pop() ?? ''
      for (const line of parts) {
        lines.push(line)
        const listening = /"msg":"Server listening at (http:\/\/127\.0\.0\.1:\d+)"/.exec(line)
        if (listening) resolve(listening[1])
      }
    })
    exited.then(code => reject(new Error(`server exited with ${code}: ${stderr}`)), reject)
  })
  return { child, url, lines, stderr: () => stderr, exited }
}

async function stopGracefully (t: Test, server: Server) {
  server.child.kill('SIGTERM')
  t.equal(await server.exited, 0, 'SIGTERM exits 0')
  t.equal(server.stderr(), '', 'nothing on stderr')
  const notJson = server.lines.filter(line => { try { JSON.parse(line); return false } catch { return true } })
  t.same(notJson, [], 'every log line is JSON')
  t.ok(server.lines.some(line => /"msg":"server closing"/.test(line) && /"signal":"SIGTERM"/.test(line)), 'the shutdown is logged')
}

const PRODUCTION = { NODE_ENV: 'production', JWT_SECRET: TEST_SECRET, LOG_LEVEL: 'info' }

t.test('production refuses to start without a signing secret, in one line', async t => {
  const child = spawnSync(process.execPath, [join(DIST, 'server.js')], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, NODE_ENV: 'production', PORT: '0' },
    encoding: 'utf8',
    timeout: 60_000
  })
  t.equal(child.status, 1)
  t.match(child.stderr, /JWT_SECRET: required in production/)
  t.notMatch(child.stderr, /\n\s+at /, 'no stack trace')
})

t.test('production on the embedded store: healthy, ready, and a clean SIGTERM', async t => {
  const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-start-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const server = await start(t, { ...PRODUCTION, DATA_DIR: dataDir })
  t.equal((await fetch(`${server.url}/health`)).status, 200)
  t.equal((await fetch(`${server.url}/ready`)).status, 200)
  await stopGracefully(t, server)
})

t.test('production on Postgres, migrated by the operator first', { skip: process.env.CI || process.env.TEST_DATABASE_URL ? false : 'TEST_DATABASE_URL is not set' }, async t => {
  const url = await freshDatabase(t, requireDatabaseUrl())
  const driver = createPostgresDriver(url, { timeoutMs: 10_000, max: 1 })
  await migrate(driver.sql)
  await driver.close()
  const server = await start(t, { ...PRODUCTION, DATABASE_URL: url })
  t.equal((await fetch(`${server.url}/health`)).status, 200)
  const ready = await fetch(`${server.url}/ready`)
  t.equal(ready.status, 200, 'ready: the store answers')
  await stopGracefully(t, server)
})
