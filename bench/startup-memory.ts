/**
 * `node dist/server.js` as a user runs it: time from spawn to the first /health
 * answer, and resident memory (VmRSS of the server plus its embedded store process)
 * 3 s later, on a new DATA_DIR and after a restart on it; with DATABASE_URL set,
 * the same server on that Postgres as the reference, in the same run. Linux (/proc).
 *
 * Beside the sum of RSS, the sum of PSS: the server and its store process are two
 * copies of the same Node binary, whose pages are shared, and RSS counts them in
 * both. PSS splits every shared page between the processes sharing it, so the sum
 * is the memory the service takes from the machine.
 *
 *   npm run bench:startup-memory -- [runs=3]
 *   DATABASE_URL=postgres://… npm run bench:startup-memory
 */
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { projectRoot } from '../lib/paths.js'

const RUNS = Math.max(1, Number(process.argv[2] ?? 3))
const PORT = 3900 + (process.pid % 90)

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

async function rssKiB (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0)
}

async function pssKiB (pid: number): Promise<number> {
  const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '')
  return Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0)
}

async function children (pid: number): Promise<number[]> {
  const tasks = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')
  return tasks.trim().split(/\s+/).filter(Boolean).map(Number)
}

interface Sample { startMs: number, serverMiB: number, storeMiB: number, pssMiB: number }

async function start (env: Record<string, string>): Promise<Sample> {
  const started = performance.now()
  // The backend is the one `env` names, whatever this process was given.
  const { DATABASE_URL, SUPABASE_URL, ...inherited } = process.env
  const server = spawn(process.execPath, [join(projectRoot, 'dist', 'server.js')], {
    env: { ...inherited, NODE_ENV: 'development', LOG_LEVEL: 'warn', HOST: '127.0.0.1', PORT: String(PORT), ...env },
    stdio: ['ignore', 'ignore', 'inherit']
  })
  const exited = new Promise(resolve => server.once('exit', resolve))
  try {
    for (;;) {
      if (server.exitCode !== null) throw new Error('the server exited during start')
      const ok = await fetch(`http://127.0.0.1:${PORT}/health`).then(res => res.ok, () => false)
      if (ok) break
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    const startMs = performance.now() - started
    await new Promise(resolve => setTimeout(resolve, 3000))
    const serverKiB = await rssKiB(server.pid!)
    let storeKiB = 0
    let pss = await pssKiB(server.pid!)
    for (const child of await children(server.pid!)) {
      storeKiB += await rssKiB(child)
      pss += await pssKiB(child)
    }
    return { startMs, serverMiB: serverKiB / 1024, storeMiB: storeKiB / 1024, pssMiB: pss / 1024 }
  } finally {
    server.kill('SIGTERM')
    await exited
  }
}

function report (name: string, samples: Sample[]) {
  const total = median(samples.map(s => s.serverMiB + s.storeMiB))
  console.log(`${name.padEnd(30)} start ${median(samples.map(s => s.startMs)).toFixed(0).padStart(5)} ms; RSS total ${total.toFixed(0)} MiB ` +
    `(server ${median(samples.map(s => s.serverMiB)).toFixed(0)}, store process ${median(samples.map(s => s.storeMiB)).toFixed(0)}); ` +
    `totals [${samples.map(s => (s.serverMiB + s.storeMiB).toFixed(0)).join(', ')}]; ` +
    `PSS total ${median(samples.map(s => s.pssMiB)).toFixed(0)} MiB [${samples.map(s => s.pssMiB.toFixed(0)).join(', ')}]`)
}

console.log(`node dist/server.js, node ${process.version}, median of ${RUNS} runs; RSS 3 s after the first /health answer`)
if (process.env.DATABASE_URL) {
  const samples: Sample[] = []
  for (let run = 0; run < RUNS; run++) samples.push(await start({ DATABASE_URL: process.env.DATABASE_URL }))
  report('Postgres', samples)
}
const fresh: Sample[] = []
const restart: Sample[] = []
for (let run = 0; run < RUNS; run++) {
  const dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-bench-'))
  try {
    fresh.push(await start({ DATA_DIR: dataDir }))
    restart.push(await start({ DATA_DIR: dataDir }))
  } finally {
    await rm(dataDir, { recursive: true, force: true })
  }
}
report('embedded, new DATA_DIR', fresh)
report('embedded, restart', restart)
