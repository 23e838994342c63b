import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { freshDatabase, requireDatabaseUrl } from './helpers/backends.js'
import { buildDist, startGatehouse, type Gatehouse } from './helpers/processes.js'
import { createPostgresDriver } from '../plugins/app/supabase/drivers/postgres.js'
import { migrate } from '../plugins/app/supabase/migrate.js'

/**
 * The container's start path, as the Dockerfile runs it: the compiled service with
 * production dependencies only, `node dist/server.js` with production settings,
 * stopped with SIGTERM.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url))
// Compiled once for the file: what the image holds (the server and the CLI's `migrate`).
const DIST = await buildDist(t, ['server.ts', 'cli.ts'])

function jsFiles (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter(entry => entry.isFile() && entry.name.endsWith('.js'))
    .map(entry => join(entry.parentPath, entry.name))
}

/** The package a bare specifier names: `@scope/name/sub` → `@scope/name`. */
const packageOf = (specifier: string) => specifier.split('/').slice(0, specifier.startsWith('@') ? 2 : 1).join('/')

t.test('the compiled server and CLI import production dependencies only', async t => {
  const { dependencies } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }
  const builtins = new Set(builtinModules)
  const outside: string[] = []
  const seen = new Set<string>()
  for (const file of jsFiles(DIST)) {
    const source = readFileSync(file, 'utf8')
    // Compiled modules put each import and re-export on a line of its own.
    for (const match of source.matchAll(/^\s*(?:import|export)\b[^'"\n]*?\bfrom\s*['"]([^'"]+)['"]|^\s*import\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/gm)) {
      const specifier = match[1] ?? match[2] ?? match[3]
      if (specifier.startsWith('.') || specifier.startsWith('node:') || builtins.has(specifier)) continue
      seen.add(packageOf(specifier))
      if (!(packageOf(specifier) in dependencies)) outside.push(`${relative(DIST, file)}: ${specifier}`)
    }
  }
  t.ok(seen.has('fastify') && seen.has('postgres'), 'the scan reads the imports')
  t.same(outside, [], 'a package outside `dependencies` is missing from the image (npm ci --omit=dev)')
})

async function stopGracefully (t: Test, server: Gatehouse) {
  server.signal('SIGTERM')
  t.equal(await server.exited, 0, 'SIGTERM exits 0')
  const notJson = server.output.filter(line => { try { JSON.parse(line); return false } catch { return true } })
  t.same(notJson, [], 'every line it wrote is a JSON log line')
  t.ok(server.output.some(line => /"msg":"server closing"/.test(line) && /"signal":"SIGTERM"/.test(line)), 'the shutdown is logged')
}

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
  const server = await startGatehouse(t, DIST, { DATA_DIR: dataDir })
  t.equal((await fetch(`${server.url}/health`)).status, 200)
  t.equal((await fetch(`${server.url}/ready`)).status, 200)
  await stopGracefully(t, server)
})

t.test('production on Postgres, migrated by the operator first', { skip: process.env.CI || process.env.TEST_DATABASE_URL ? false : 'TEST_DATABASE_URL is not set' }, async t => {
  const url = await freshDatabase(t, requireDatabaseUrl())
  const driver = createPostgresDriver(url, { timeoutMs: 10_000, max: 1 })
  await migrate(driver.sql)
  await driver.close()
  const server = await startGatehouse(t, DIST, { DATABASE_URL: url })
  t.equal((await fetch(`${server.url}/health`)).status, 200)
  t.equal((await fetch(`${server.url}/ready`)).status, 200, 'ready: the store answers')
  await stopGracefully(t, server)
})
