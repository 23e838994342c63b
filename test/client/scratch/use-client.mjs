// Runs in a scratch project that installed the packed tarball: it imports the
// client as any other project would, and prints what happens as JSON lines.
import { connect } from 'gatehouse/client'

const [url, accessToken, impl] = process.argv.slice(2)
const WebSocket = impl === 'ws' ? (await import('ws')).default : undefined // undefined: the runtime's own
const print = (event, value) => process.stdout.write(JSON.stringify({ event, value }) + '\n')
const statuses = []
const record = status => { statuses.push(status); print('status', status) }

// 1. Delivery: the parent sends once we are ready; the message is handled, then acknowledged by close().
const delivery = connect({
  url,
  accessToken,
  WebSocket,
  onStatus: record,
  onMessage: message => {
    print('message', message)
    setImmediate(() => delivery.close())
  }
})
await delivery.stopped

// 2. A refused upgrade (a ticket the server does not accept): the client retries with backoff until closed.
let tickets = 0
const refused = connect({
  url,
  accessToken,
  WebSocket,
  backoff: { initialMs: 10, maxMs: 50 },
  fetch: async () => { tickets++; return { status: 200, ok: true, json: async () => ({ token: 'not-a-ticket' }) } },
  onStatus: status => {
    record(status)
    if (status.state === 'disconnected' && tickets === 3) refused.close()
  },
  onMessage: () => {}
})
print('refused', { stopped: await refused.stopped, tickets })

// 3. A refused access token: the client stops for good.
const unauthorized = connect({ url, accessToken: 'not-a-token', WebSocket, onStatus: record, onMessage: () => {} })
print('unauthorized', { stopped: await unauthorized.stopped })
