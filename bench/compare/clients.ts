/**
 * Benchmark clients in a process of their own: opens the sockets it is given
 * (at most `concurrency` handshakes at a time), and notes when the first and
 * the last message of a send arrive. Gatehouse and bare ws through the `ws`
 * package, socket.io through socket.io-client (WebSocket transport only).
 * A gatehouse socket is open at its `ready` frame (after authentication and the
 * replay check), a reference's at its open/connect event.
 */
import WebSocket from 'ws'
import { io, type Socket } from 'socket.io-client'
import { epochNow, type FromClients, type ToClients } from './protocol.js'

const send = (message: FromClients) => process.send?.(message)

interface Client { close (): void }
let clients: Client[] = []
let expected = 0
let received = 0
let first = 0
let last = 0

function arrived () {
  const now = epochNow()
  if (received === 0) first = now
  last = now
  if (++received === expected) send({ type: 'received', first, last })
}

function openWs (url: string, gatehouse: boolean, ack: boolean): Promise<Client> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false })
    const client = { close: () => ws.terminate() }
    ws.on('error', reject)
    ws.on('unexpected-response', (_req, res) => {
      let body = ''
      res.on('data', chunk => { body += chunk })
      res.on('end', () => reject(new Error(`upgrade refused: ${res.statusCode} ${body}`)))
    })
    ws.on('message', raw => {
      // Parsed as socket.io's client parses its packets: both sides do the same work.
      const frame = JSON.parse(raw.toString()) as { type: string, id?: string }
      if (frame.type === 'message') {
        arrived()
        if (gatehouse && ack) ws.send(JSON.stringify({ type: 'ack', ids: [frame.id] }))
      } else if (gatehouse && frame.type === 'ready') {
        resolve(client)
      }
    })
    if (!gatehouse) ws.once('open', () => resolve(client))
  })
}

function openSocketIo (port: number, user: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket: Socket = io(`http://127.0.0.1:${port}`, { transports: ['websocket'], auth: { user }, reconnection: false, forceNew: true, timeout: 120_000 })
    socket.on('message', arrived)
    socket.once('connect', () => resolve({ close: () => socket.disconnect() }))
    socket.once('connect_error', reject)
  })
}

async function connect (message: Extract<ToClients, { type: 'connect' }>) {
  const { kind, port, credentials, users, concurrency, ack } = message
  let failed = 0
  let retries = 0
  let firstError: string | null = null
  let next = 0
  const worker = async () => {
    while (next < credentials.length) {
      const i = next++
      // A refused or reset handshake is retried twice, a second apart, as a real client would.
      for (let attempt = 1; ; attempt++) {
        try {
          clients.push(kind === 'socketio'
            ? await openSocketIo(port, users[i])
            : await openWs(kind === 'gatehouse' ? `ws://127.0.0.1:${port}/ws?token=${credentials[i]}` : `ws://127.0.0.1:${port}/?user=${users[i]}`, kind === 'gatehouse', ack))
          break
        } catch (error) {
          firstError ??= String(error)
          // A gatehouse ticket is single-use: once the upgrade was answered, it is spent.
          if (attempt === 3 || (kind === 'gatehouse' && /upgrade refused/.test(String(error)))) {
            failed++
            break
          }
          retries++
          await new Promise(resolve => setTimeout(resolve, 1000))
        }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, credentials.length) }, worker))
  send({ type: 'connected', failed, retries, firstError })
}

// Orphaned (the benchmark ended or crashed): go too.
process.on('disconnect', () => process.exit(0))
process.on('message', (message: ToClients) => {
  if (message.type === 'connect') {
    connect(message).catch(error => send({ type: 'connected', failed: message.credentials.length, retries: 0, firstError: String(error) }))
  } else if (message.type === 'expect') {
    expected = message.count
    received = 0
    send({ type: 'expecting' })
  } else if (message.type === 'disconnect') {
    for (const client of clients) client.close()
    clients = []
    send({ type: 'disconnected' })
  } else {
    process.exit(0)
  }
})
