/**
 * What one send costs Postgres: CPU time of the database backend that runs
 * gatehouse_send for 10,000 and 100,000 offline recipients, read from
 * /proc (so Postgres must run on this machine). CPU time, unlike wall time,
 * hardly moves when other work shares the machine. Reference in the same run:
 * the CPU time of a statement that only reads every recipient (the check every
 * send makes), so the ratio is what storing adds. "chunked" is the same send as
 * the service writes it past SEND_FIRST_CHUNK (1,000): gatehouse_send for the first
 * chunk, then gatehouse_send_more for each later one, CPU and wall summed.
 *
 *   DATABASE_URL=postgres://… npm run bench:send-cost -- [--runs 5]
 *
 * Adds a uniquely named organization of 100,000 users and removes it (and its
 * messages) at the end.
 */
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import postgres from 'postgres'
import { createPostgresDriver } from '../plugins/app/supabase/drivers/postgres.js'
import { migrate } from '../plugins/app/supabase/migrate.js'
import { chunksAfter } from '../plugins/app/messaging.js'

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } })
const RUNS = Number(values.runs)
const SIZES = [10_000, 100_000]
const url = process.env.DATABASE_URL
if (!url) throw new Error('DATABASE_URL is required')

const driver = createPostgresDriver(url, { timeoutMs: 120_000 })
await migrate(driver.sql)
await driver.close()

const sql = postgres(url, { max: 1, onnotice: () => {} })
const FIRST_CHUNK = 1000
const [{ pid }] = await sql<Array<{ pid: number }>>`select pg_backend_pid() as pid`
const ticks = Number(process.env.CLK_TCK ?? 100)
/** utime + stime of the backend, in ms. */
const cpu = () => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 1000 / ticks
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

const org = `bench_${randomUUID()}`
await sql`insert into users (id, organization_id) select ${org} || '_' || g, ${org} from generate_series(0, ${SIZES.at(-1)!}) g`
const sender = `${org}_0`

try {
  console.log(`Postgres backend CPU per call, median of ${RUNS} (after one warm-up), node ${process.version}`)
  for (const size of SIZES) {
    const recipients = Array.from({ length: size }, (_, i) => `${org}_${i + 1}`)
    const time = async (query: () => Promise<unknown>) => {
      const cpuMs: number[] = []
      const wallMs: number[] = []
      for (let run = 0; run <= RUNS; run++) {
        const [c, w] = [cpu(), performance.now()]
        await query()
        if (run > 0) {
          cpuMs.push(cpu() - c)
          wallMs.push(performance.now() - w)
        }
      }
      return { cpu: median(cpuMs), wall: median(wallMs) }
    }
    const check = await time(() => sql`select count(*) from unnest(${recipients}::text[]) r where exists (select 1 from users u where u.id = r and u.organization_id = ${org})`)
    const send = await time(() => sql`select gatehouse_send(${sender}, ${org}, false, ${recipients}::text[], 'bench', null, null, null) is not null`)
    const chunked = await time(async () => {
      const [{ result }] = await sql<Array<{ result: { id: string } }>>`select gatehouse_send(p_sender => ${sender}, p_sender_org => ${org}, p_is_admin => false,
        p_recipients => ${recipients}::text[], p_content => 'bench', p_template_id => null, p_idempotency_key => null, p_request_hash => null,
        p_first_chunk => ${FIRST_CHUNK}) as result`
      for (const [start, end] of chunksAfter(FIRST_CHUNK, size, FIRST_CHUNK)) {
        await sql`select gatehouse_send_more(${result.id}::uuid, ${recipients.slice(start, end)}::text[], ${sender}) is not null`
      }
    })
    console.log(`  ${String(size).padStart(7)} recipients: send ${send.cpu.toFixed(0).padStart(5)} ms CPU (${(send.cpu * 1000 / size).toFixed(1)} µs per row, ` +
      `x${(send.cpu / check.cpu).toFixed(1)} the recipient check's ${check.cpu.toFixed(0)} ms); wall ${send.wall.toFixed(0)} ms`)
    console.log(`  ${String(size).padStart(7)} recipients: chunked ${chunked.cpu.toFixed(0).padStart(5)} ms CPU (x${(chunked.cpu / send.cpu).toFixed(2)} the one-transaction send); ` +
      `wall ${chunked.wall.toFixed(0)} ms`)
  }
} finally {
  await sql`delete from message_bodies where sender_id = ${sender}`
  await sql`delete from users where organization_id = ${org}`
  await sql.end()
}
