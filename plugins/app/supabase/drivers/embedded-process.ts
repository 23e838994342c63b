import { readFile } from 'node:fs/promises'
import { setFlagsFromString } from 'node:v8'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'
import { openPglite, pgliteAccess } from './pglite.js'
import { migrate } from '../migrate.js'

/**
 * The embedded store's own process: PGlite (Postgres compiled to WASM, which blocks
 * the thread it runs in) served over the Postgres wire protocol on a Unix socket, so
 * the service's event loop never waits for a query. Started and supervised by
 * embedded.ts, which holds the DATA_DIR lock; it exits when that process goes away.
 */
export interface EmbeddedProcessOptions {
  dataDir: string | null
  /** A dump (tar) to start an in-memory store from. */
  loadDataDir: string | null
  socketPath: string
  maxConnections: number
  optimize: boolean
  /** Create and migrate the store, then exit: initdb's memory peak is not kept by the serving process. */
  prepareOnly: boolean
}

export type EmbeddedProcessMessage =
  | { type: 'ready', applied: string[] }
  | { type: 'failed', message: string }

function send (message: EmbeddedProcessMessage): void {
  process.send?.(message)
}

async function main (options: EmbeddedProcessOptions): Promise<void> {
  // By default Postgres' WebAssembly stays on V8's baseline compiler: optimizing it
  // keeps about 45 MiB more machine code resident, for bulk writes about twice as fast.
  // Set before PGlite compiles its module; a flag V8 no longer knows is ignored.
  if (!options.optimize) setFlagsFromString('--liftoff-only')
  const dump = options.loadDataDir ? new Blob([await readFile(options.loadDataDir)]) : undefined
  const db = await openPglite(options.dataDir, dump)
  const applied = await migrate(pgliteAccess(db))
  if (options.prepareOnly) {
    await db.close()
    send({ type: 'ready', applied })
    process.disconnect?.()
    return
  }
  const server = new PGLiteSocketServer({ db, path: options.socketPath, maxConnections: options.maxConnections })
  await server.start()
  // Starting leaves ~9 MiB of garbage (among it the bytes PGlite read to compile its
  // module) that V8 would keep until its next major collection, which a store at rest
  // may not reach for hours. The process that serves is started with --expose-gc.
  ;(globalThis as { gc?: () => void }).gc?.()
  let stopping = false
  const stop = () => {
    if (stopping) return
    stopping = true
    server.stop().then(async () => { await db.close() }).then(() => process.exit(0), () => process.exit(1))
  }
  // The service closed the channel (it is stopping, or it died): stop, checkpointing the store.
  process.on('disconnect', stop)
  process.on('SIGTERM', stop)
  process.on('SIGINT', () => {})
  send({ type: 'ready', applied })
}

main(JSON.parse(process.argv[2]) as EmbeddedProcessOptions).catch((error: unknown) => {
  send({ type: 'failed', message: error instanceof Error ? error.message : String(error) })
  process.exitCode = 1
  process.disconnect?.()
})
