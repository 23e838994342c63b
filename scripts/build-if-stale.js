// Compiles the project only when a source is newer than the last build, so
// `npm run cli` costs a compile once after a change instead of on every call.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const stamp = join(root, 'dist', '.build-stamp')
// What tsconfig.build.json compiles, and the files that change how it compiles.
const dirs = ['lib', 'plugins', 'routes', 'schemas', 'client', 'bench']
const files = ['tsconfig.json', 'tsconfig.build.json', 'package.json', 'package-lock.json']

/** Newest modification time among the sources; a directory's counts too, so a deleted or renamed file is seen. */
function newest (path) {
  const stat = statSync(path, { throwIfNoEntry: false })
  if (!stat) return 0
  if (!stat.isDirectory()) return stat.mtimeMs
  let latest = stat.mtimeMs
  for (const entry of readdirSync(path)) latest = Math.max(latest, newest(join(path, entry)))
  return latest
}

const sources = [
  ...readdirSync(root).filter(name => name.endsWith('.ts')),
  ...dirs,
  ...files
].map(name => newest(join(root, name)))

const built = existsSync(stamp) ? statSync(stamp).mtimeMs : 0
if (built > 0 && Math.max(...sources) < built) process.exit(0)

const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
const result = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' })
if (result.status !== 0) process.exit(result.status ?? 1)
writeFileSync(stamp, `${new Date().toISOString()}\n`)
