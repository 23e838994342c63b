import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The project root (package.json beside supabase/migrations), whether running from source or from dist/. */
export const projectRoot = (() => {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'supabase', 'migrations'))) {
    const parent = dirname(dir)
    if (parent === dir) throw new Error('project root not found')
    dir = parent
  }
  return dir
})()

export const migrationsDir = join(projectRoot, 'supabase', 'migrations')
export const clientBuildFile = join(projectRoot, 'dist', 'client', 'index.js')
