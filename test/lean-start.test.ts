import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { createEmbeddedDriver } from '../plugins/app/supabase/drivers/embedded.js'
import { buildDist, startGatehouse } from './helpers/processes.js'

/**
 * What `npm start` keeps resident on the embedded store (bench/startup-memory.ts
 * measures it): the server loads no client for a service it was not configured to
 * use, and the store process runs with the settings that keep it small.
 */
const DIST = await buildDist(t)

async function tempDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-lean-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

// Records every module the server process loads (not its store process) in MODULE_LIST.
const RECORD_MODULES = 'data:text/javascript,' + encodeURIComponent(`
import { registerHooks } from 'node:module'
import { appendFileSync } from 'node:fs'
if (process.argv[1].endsWith('server.js')) {
  registerHooks({ load (url, context, next) { appendFileSync(process.env.MODULE_LIST, url + '\\n'); return next(url, context) } })
}`)

t.test('a server without Clerk, Supabase, Redis or webhooks configured loads none of their clients', async t => {
  const dir = await tempDir(t)
  const moduleList = join(dir, 'modules.txt')
  const server = await startGatehouse(t, DIST, { DATA_DIR: join(dir, 'data'), NODE_OPTIONS: `--import=${RECORD_MODULES}`, MODULE_LIST: moduleList })
  t.equal((await fetch(`${server.url}/health`)).status, 200)
  const loaded = (await readFile(moduleList, 'utf8')).split('\n')
  t.ok(loaded.some(url => url.includes('/node_modules/fastify/')), 'the module list is recorded')
  for (const name of ['@clerk/backend', 'svix', '@supabase/supabase-js', 'ioredis']) {
    t.notOk(loaded.some(url => url.includes(`/node_modules/${name}/`)), `${name} is not loaded`)
  }
  server.signal('SIGTERM')
  t.equal(await server.exited, 0)
})

t.test('the serving store process runs with a small young generation, one thread and glibc returning freed blocks', async t => {
  const driver = await createEmbeddedDriver({ dataDir: join(await tempDir(t), 'data'), timeoutMs: 5000 })
  t.after(() => driver.close())
  const pid = driver.pid as number
  const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')
  t.ok(argv.includes('--max-semi-space-size=1'), 'young generation capped')
  t.ok(argv.includes('--single-threaded'), 'no background threads')
  const environ = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0')
  t.ok(environ.includes('MALLOC_MMAP_THRESHOLD_=16384'), 'freed blocks over 16 KiB go back to the system')
  t.same(await driver.sql.query('select 1 as one'), [{ one: 1 }], 'and it answers')
})
