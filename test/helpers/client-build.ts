import { execFile } from 'node:child_process'
import { statSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { projectRoot } from '../../lib/paths.js'

const run = promisify(execFile)
export const builtClient = join(projectRoot, 'dist', 'client', 'index.js')

const mtime = (file: string) => { try { return statSync(file).mtimeMs } catch { return 0 } }

/**
 * dist/client, as `npm run build:client` makes it. `npm test` builds it first
 * (pretest); a test file run alone builds it here when it is missing or stale.
 */
export async function ensureClientBuilt (): Promise<string> {
  if (mtime(builtClient) < mtime(join(projectRoot, 'client', 'index.ts'))) {
    await run(process.execPath, [join(projectRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(projectRoot, 'tsconfig.client.json')], { cwd: projectRoot })
  }
  return builtClient
}
