import { execFile, spawn } from 'node:child_process'
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { promisify } from 'node:util'
import t from 'tap'
import { projectRoot } from '../../lib/paths.js'
import type { ClientStatus, Message } from '../../client/index.js'
import { accessTokenFor, buildApp, createUser } from '../helpers/app.js'
import { ensureClientBuilt } from '../helpers/client-build.js'
import { listen, sendDirect } from '../ws/helpers.js'

const run = promisify(execFile)
const npm = (args: string[], cwd: string) => run('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd, maxBuffer: 16 << 20 })
const fixtures = join(projectRoot, 'test', 'client', 'scratch')

type Line = { event: 'status', value: ClientStatus } | { event: 'message', value: Message } |
  { event: 'refused', value: { stopped: string, tickets: number } } | { event: 'unauthorized', value: { stopped: string } }

t.test('the packed package is importable as gatehouse/client from another project', async t => {
  await ensureClientBuilt()
  const scratch = await mkdtemp(join(tmpdir(), 'gatehouse-scratch-'))
  t.after(() => rm(scratch, { recursive: true, force: true }))

  // What `npm publish` would ship; prepack is skipped because the client is built above.
  const { stdout } = await npm(['pack', '--ignore-scripts', '--json', '--pack-destination', scratch], projectRoot)
  const [packed] = JSON.parse(stdout) as Array<{ filename: string, files: Array<{ path: string }> }>
  const files = packed.files.map(f => f.path)
  t.ok(files.includes('dist/client/index.js') && files.includes('dist/client/index.d.ts'), 'built JS and types are packed')
  t.notOk(files.some(f => f.startsWith('dist/') && !f.startsWith('dist/client/')), 'the server build is not')

  await writeFile(join(scratch, 'package.json'), JSON.stringify({ name: 'scratch', private: true, type: 'module' }))
  // The registry is only asked for what npm's cache lacks.
  await npm(['install', '--prefer-offline', join(scratch, packed.filename), 'ws@8'], scratch)
  for (const file of ['use-client.mjs', 'types-check.ts']) await copyFile(join(fixtures, file), join(scratch, file))

  t.test('its types resolve through the exports map', async t => {
    await writeFile(join(scratch, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', lib: ['es2022', 'dom'], strict: true, noEmit: true, types: [] },
      files: ['types-check.ts']
    }))
    const tsc = join(projectRoot, 'node_modules', 'typescript', 'bin', 'tsc')
    const result = await run(process.execPath, [tsc, '-p', scratch]).then(() => 'ok', (e: { stdout: string }) => e.stdout)
    t.equal(result, 'ok', 'a TypeScript project type-checks against gatehouse/client')
  })

  const app = await buildApp(t)
  const url = await listen(app)
  const sender = await createUser(app)

  // `ws` everywhere; the runtime's own WebSocket where it has one (Node 22+), which CI runs.
  const impls = ['ws', ...(typeof (globalThis as { WebSocket?: unknown }).WebSocket === 'function' ? ['global'] : [])]
  for (const impl of impls) {
    t.test(`on Node ${process.versions.node} with ${impl === 'ws' ? 'the ws package' : 'the built-in WebSocket'}`, async t => {
      const user = await createUser(app)
      const child = spawn(process.execPath, ['use-client.mjs', url, accessTokenFor(app, user), impl], { cwd: scratch, stdio: ['ignore', 'pipe', 'pipe'] })
      t.after(() => child.kill())
      let stderr = ''
      child.stderr.on('data', d => { stderr += d })
      const lines: Line[] = []
      let sent: string[] = []
      for await (const text of createInterface({ input: child.stdout })) {
        const line = JSON.parse(text) as Line
        lines.push(line)
        if (line.event === 'status' && line.value.state === 'ready') sent = await sendDirect(app, sender, [user.id], `hello over ${impl}`)
      }
      const code = await new Promise(resolve => child.exitCode === null ? child.once('exit', resolve) : resolve(child.exitCode))
      t.equal(code, 0, `the script ran to the end ${stderr}`)

      const messages = lines.filter(l => l.event === 'message').map(l => l.value as Message)
      t.match(messages, [{ id: sent[0], senderId: sender.id, content: `hello over ${impl}`, createdAt: String }], 'the message arrived, with its sender and time')
      t.same(await app.store.pendingMessages(user.id, 0, 10), [], 'and was acknowledged')

      const refused = lines.find(l => l.event === 'refused')?.value
      t.same(refused, { stopped: 'closed', tickets: 3 }, 'a refused upgrade is retried with a new ticket until closed')
      const statuses = lines.filter(l => l.event === 'status').map(l => (l.value as ClientStatus).state)
      t.same(statuses.slice(2, 10), ['stopped', 'connecting', 'disconnected', 'connecting', 'disconnected', 'connecting', 'disconnected', 'stopped'],
        'connecting and disconnected alternate, then stop')
      t.same(lines.at(-1), { event: 'unauthorized', value: { stopped: 'unauthorized' } }, 'a refused access token stops the client')
    })
  }
})
