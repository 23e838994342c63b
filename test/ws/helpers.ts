import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import WebSocket, { type ClientOptions } from 'ws'
import type { User } from '../../schemas/users.js'
import type { MessageFrame, ServerFrame } from '../../schemas/ws.js'
import { batchOf } from '../../plugins/app/websocket/index.js'

/** Guards every wait so a missing frame fails the test with a message instead of hanging it. */
const WAIT_MS = 15_000

/** Listens on a free local port; the URL is http://127.0.0.1:<port>. */
export async function listen (app: FastifyInstance): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
}

export function wsUrl (base: string, token?: string): string {
  return base.replace(/^http/, 'ws') + '/ws' + (token === undefined ? '' : `?token=${encodeURIComponent(token)}`)
}

function guard<T> (promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${WAIT_MS} ms`)), WAIT_MS)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

export interface Closed { code: number, reason: string }

/** A raw `ws` client that records the frames it receives, in order. */
export class Peer {
  private readonly frames: ServerFrame[] = []
  private wake: (() => void) | null = null
  readonly closed: Promise<Closed>
  /** Every frame as it came over the wire: its text, and whether it was sent as binary. */
  readonly wire: Array<{ text: string, binary: boolean }> = []

  private constructor (readonly ws: WebSocket) {
    ws.on('message', (data, binary) => {
      this.wire.push({ text: data.toString(), binary })
      this.frames.push(JSON.parse(data.toString()))
      this.wake?.()
    })
    this.closed = new Promise(resolve => ws.on('close', (code, reason) => {
      resolve({ code, reason: reason.toString() })
      this.wake?.()
    }))
  }

  /** Opens a socket (closed when the test ends); rejects with the HTTP status when the upgrade is refused. */
  static async open (t: Test, url: string, options: ClientOptions = {}): Promise<Peer> {
    const ws = new WebSocket(url, options)
    const peer = new Peer(ws)
    t.after(() => ws.terminate())
    await guard(new Promise<void>((resolve, reject) => {
      ws.once('open', resolve)
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with ${res.statusCode}`)))
      ws.once('error', reject)
    }), 'open')
    return peer
  }

  /** Opens a socket and waits for `ready`. */
  static async ready (t: Test, url: string, options: ClientOptions = {}): Promise<Peer> {
    const peer = await Peer.open(t, url, options)
    const frame = await peer.next()
    if (frame.type !== 'ready') throw new Error(`expected ready, got ${frame.type}`)
    return peer
  }

  /** The next frame; rejects when the socket closes first. */
  async next (): Promise<ServerFrame> {
    while (this.frames.length === 0) {
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error('socket closed')
      await guard(new Promise<void>(resolve => { this.wake = resolve }), 'frame')
    }
    return this.frames.shift() as ServerFrame
  }

  /** The next `count` message frames. */
  async messages (count: number): Promise<MessageFrame[]> {
    const received: MessageFrame[] = []
    while (received.length < count) {
      const frame = await this.next()
      if (frame.type === 'message') received.push(frame)
    }
    return received
  }

  /** Every frame received before the socket closed, and the close. */
  async untilClosed (): Promise<{ frames: ServerFrame[], closed: Closed }> {
    const closed = await guard(this.closed, 'close')
    return { frames: this.frames.splice(0), closed }
  }

  ack (ids: string[]): void {
    this.ws.send(JSON.stringify({ type: 'ack', ids }))
  }
}

/** Attempts an upgrade that must be refused; the HTTP status and JSON body of the refusal. */
export async function refused (url: string, options: ClientOptions = {}): Promise<{ statusCode: number, body: Record<string, unknown> }> {
  const ws = new WebSocket(url, options)
  return await guard(new Promise((resolve, reject) => {
    ws.once('open', () => {
      ws.terminate()
      reject(new Error('the upgrade was accepted'))
    })
    ws.once('error', reject)
    ws.once('unexpected-response', (_req, res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', chunk => { text += chunk })
      res.on('end', () => {
        ws.terminate()
        resolve({ statusCode: res.statusCode ?? 0, body: text ? JSON.parse(text) : {} })
      })
    })
  }), 'refusal')
}

/** Stores one send and publishes it, as the messaging API does; the ids in recipient order. */
export async function sendDirect (app: FastifyInstance, sender: User, recipientIds: string[], content: string): Promise<string[]> {
  const outcome = await app.store.send({
    senderId: sender.id,
    senderOrganizationId: sender.organizationId,
    senderIsAdmin: sender.role === 'admin',
    recipientIds,
    content,
    templateId: null,
    idempotencyKey: null,
    requestHash: null
  })
  if (!outcome.ok) throw new Error(`send refused: ${outcome.error}`)
  const { result } = outcome
  await app.hub.publish(batchOf({ senderId: sender.id, content, templateId: null }, result))
  return recipientIds.map(id => (result.messages.find(m => m.recipientId === id) as { id: string }).id)
}

/** A fresh ws ticket for a user. */
export function ticketFor (app: FastifyInstance, user: User, sessionExpiresAt?: number): string {
  return app.tokens.issueWsTicket(user.id, sessionExpiresAt).token
}
