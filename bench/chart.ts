/**
 * Draws the figures of `bench:ws-compare` as an SVG chart for docs/benchmarks.md:
 * one panel per scenario, a bar per subject at its median, a whisker from min to
 * max. Plain SVG written by hand: no charting dependency for six panels.
 *
 *   npm run bench:chart -- [--in bench/results/ws-compare.json] [--out docs/benchmarks.svg]
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    in: { type: 'string', default: 'bench/results/ws-compare.json' },
    out: { type: 'string', default: 'docs/benchmarks.svg' }
  }
})

interface Summary { min: number, median: number, max: number }
interface Results {
  startedAt: string
  machine: { cpus: number, cpuModel: string, node: string, loadAverageAtStart: number[] }
  parameters: { clients: number, rounds: number, store: string }
  results: Record<string, { label: string, subjects: Record<string, Summary> }>
}

const data = JSON.parse(readFileSync(values.in, 'utf8')) as Results
const COLORS: Record<string, string> = { gatehouse: '#2f6fb5', ws: '#8a8a8a', socketio: '#d08a2b', baseline: '#9bb8d9' }
const NAMES: Record<string, string> = { gatehouse: 'gatehouse', ws: 'bare ws', socketio: 'socket.io', baseline: 'before' }

const WIDTH = 860
const LEFT = 110
const RIGHT = 70
const BAR = 16
const GAP = 6
const TITLE = 22
const PANEL_GAP = 18

const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
const fmt = (x: number) => x >= 100 ? x.toFixed(0) : x.toFixed(1)

/** gatehouse's median against each reference's, as the text tables print them. */
const ratios = (subjects: Record<string, Summary>) => {
  const others = Object.keys(subjects).filter(s => s !== 'gatehouse')
  return others.length === 0 ? '' : `  (${others.map(s => `${(subjects.gatehouse.median / subjects[s].median).toFixed(2)}× ${NAMES[s] ?? s}`).join(', ')})`
}

const parts: string[] = []
let y = 46
for (const metric of Object.values(data.results)) {
  const subjects = Object.keys(metric.subjects)
  const scaleMax = Math.max(...subjects.map(s => metric.subjects[s].max)) * 1.05
  const x = (v: number) => LEFT + (v / scaleMax) * (WIDTH - LEFT - RIGHT)
  parts.push(`<text x="${LEFT}" y="${y + 14}"><tspan class="title">${escape(metric.label)}</tspan><tspan class="small">${escape(ratios(metric.subjects))}</tspan></text>`)
  let row = y + TITLE
  for (const subject of subjects) {
    const s = metric.subjects[subject]
    const mid = row + BAR / 2
    parts.push(
      `<text x="${LEFT - 8}" y="${mid + 4}" class="name">${NAMES[subject] ?? subject}</text>`,
      `<rect x="${LEFT}" y="${row}" width="${(x(s.median) - LEFT).toFixed(1)}" height="${BAR}" fill="${COLORS[subject] ?? '#555'}"/>`,
      `<line x1="${x(s.min).toFixed(1)}" x2="${x(s.max).toFixed(1)}" y1="${mid}" y2="${mid}" class="whisker"/>`,
      `<line x1="${x(s.min).toFixed(1)}" x2="${x(s.min).toFixed(1)}" y1="${mid - 4}" y2="${mid + 4}" class="whisker"/>`,
      `<line x1="${x(s.max).toFixed(1)}" x2="${x(s.max).toFixed(1)}" y1="${mid - 4}" y2="${mid + 4}" class="whisker"/>`,
      `<text x="${(x(s.max) + 6).toFixed(1)}" y="${mid + 4}" class="value">${fmt(s.median)}</text>`
    )
    row += BAR + GAP
  }
  y = row + PANEL_GAP
}

const { machine, parameters } = data
const heading = `gatehouse vs bare ws vs socket.io, ${parameters.clients} sockets, ${parameters.store} store`
const footer = `${machine.cpus} × ${machine.cpuModel}, Node ${machine.node}, load average ${machine.loadAverageAtStart.join(' ')} at start (shared machine), ${data.startedAt.slice(0, 16).replace('T', ' ')} UTC`
const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${y + 20}" viewBox="0 0 ${WIDTH} ${y + 20}" font-family="system-ui, sans-serif" font-size="12">
<style>.title{font-weight:600}.name{text-anchor:end}.value{fill:#333}.whisker{stroke:#222;stroke-width:1.2}.small{fill:#555;font-size:11px}</style>
<rect width="100%" height="100%" fill="#fff"/>
<text x="10" y="20" font-weight="700" font-size="13">${escape(heading)}</text>
<text x="10" y="36" class="small">median (bar), min–max (whisker) of ${parameters.rounds} interleaved rounds; lower is better in every panel; gatehouse's ratios are of medians</text>
${parts.join('\n')}
<text x="10" y="${y + 8}" class="small">${escape(footer)}</text>
</svg>
`
writeFileSync(values.out, svg)
console.log(`chart written to ${values.out}`)
