import { main } from './cli/run.js'

// Operator commands (`npm run cli -- help`). Output goes through write() so that
// `tokens mint` prints the token and nothing else.
process.exitCode = await main(process.argv.slice(2), process.env, {
  out: text => { process.stdout.write(text) },
  err: text => { process.stderr.write(text) }
})
