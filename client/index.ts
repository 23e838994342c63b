/**
 * A small client for gatehouse's real-time delivery, for browsers and Node.
 * It gets a single-use ticket from `GET /websocket-token/`, connects to
 * `/ws?token=`, hands each message to `onMessage` once (messages are delivered
 * at least once; ids de-duplicate them), acknowledges them in batches, and
 * reconnects with full-jitter exponential backoff.
 *
 * No Node-only imports: pass `WebSocket` (e.g. the `ws` package) and `fetch`
 * where the platform has no global ones.
 */

/** A delivered message, as in the server's `{type:"message"}` frame. */
export interface Message {
  /** The send's id: unique among this user's messages; the other recipients of the same send see it too. */
  id: string
  senderId: string
  content: string
  templateId?: string
  createdAt: string
}

/** What the client needs of a WebSocket: the browser's and the `ws` package's both fit. */
export interface WebSocketLike {
  readonly readyState: number
  send (data: string): void
  close (code?: number, reason?: string): void
  addEventListener (type: string, listener: (event: any) => void): void
}
export type WebSocketConstructor = new (url: string) => WebSocketLike
export type FetchLike = (url: string, init: { headers: Record<string, string>, credentials?: 'include', signal?: AbortSignal }) => Promise<{ status: number, ok: boolean, json (): Promise<unknown> }>

export type StopReason =
  /** `close()` was called. */
  | 'closed'
  /** The server closed with 4003: access revoked or user removed. */
  | 'revoked'
  /** The ticket endpoint refused the access token (or cookie) with 401. */
  | 'unauthorized'

export type ClientStatus =
  | { state: 'connecting', attempt: number }
  | { state: 'ready', userId: string }
  | { state: 'disconnected', code: number, reason: string, retryInMs: number }
  | { state: 'stopped', reason: StopReason }

export interface ClientOptions {
  /** The service's base URL, e.g. `https://api.example.com`. */
  url: string
  /** Sent as `Authorization: Bearer` to get tickets; without it the browser's cookie is used. */
  accessToken?: string | (() => string | Promise<string>)
  /** Called once per message id, in delivery order; a throw leaves the message unacknowledged. */
  onMessage: (message: Message) => void | Promise<void>
  onStatus?: (status: ClientStatus) => void
  /** Errors the client recovered from (a failing handler, a failed ticket request). */
  onError?: (error: unknown) => void
  WebSocket?: WebSocketConstructor
  fetch?: FetchLike
  /**
   * `auto` (default): a message is acknowledged once `onMessage` returns.
   * `manual`: only when passed to `ack()`, e.g. after a person has read it.
   */
  ack?: 'auto' | 'manual'
  /** Acks wait at most this long to be sent together (default 100 ms). */
  ackDelayMs?: number
  /** ...or until this many are waiting (default 100, at most 1000). */
  ackBatchSize?: number
  /** How many recent message ids are remembered for de-duplication (default 10,000). */
  dedupeSize?: number
  /** Reconnect delay: random between 0 and min(maxMs, initialMs * 2^attempt). */
  backoff?: { initialMs?: number, maxMs?: number }
}

const OPEN = 1
const REVOKED = 4003
const TOKEN_EXPIRED = 4001
const MAX_ACK_IDS = 1000
const TICKET_TIMEOUT_MS = 10_000

class TicketRefused extends Error {}

export class GatehouseClient {
  private readonly options: ClientOptions
  private readonly WebSocket: WebSocketConstructor
  private readonly fetch: FetchLike
  private ws: WebSocketLike | null = null
  private started = false
  private ready = false
  private attempt = 0
  private retryTimer: ReturnType<typeof setTimeout> | undefined
  private ackTimer: ReturnType<typeof setTimeout> | undefined
  private acks: string[] = []
  private readonly seen = new Set<string>()
  private handling: Promise<void> = Promise.resolve()
  private stopReason: StopReason | null = null
  private resolveStopped!: (reason: StopReason) => void
  /** Resolves when the client stops for good, with the reason. */
  readonly stopped: Promise<StopReason>

  constructor (options: ClientOptions) {
    this.options = options
    const WebSocketImpl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket
    const fetchImpl = options.fetch ?? (globalThis as { fetch?: FetchLike }).fetch
    if (!WebSocketImpl) throw new TypeError('No global WebSocket: pass the WebSocket option (e.g. the ws package)')
    if (!fetchImpl) throw new TypeError('No global fetch: pass the fetch option')
    this.WebSocket = WebSocketImpl
    this.fetch = fetchImpl.bind(globalThis)
    this.stopped = new Promise(resolve => { this.resolveStopped = resolve })
  }

  /** Starts connecting; the client then stays connected until `close()`, 4003 or a refused access token. */
  start (): this {
    if (!this.started && this.stopReason === null) {
      this.started = true
      this.reconnect()
    }
    return this
  }

  /** Sends the acks still waiting, closes the socket and stops reconnecting. */
  close (): void {
    if (this.stopReason !== null) return
    this.flushAcks()
    const ws = this.ws
    this.stop('closed')
    ws?.close(1000, 'client closed')
  }

  private reconnect (): void {
    this.connect().catch(error => {
      // e.g. a malformed URL: report it and keep trying, as for any failed attempt.
      this.options.onError?.(error)
      if (this.stopReason === null) this.retry(undefined, 'connect failed')
    })
  }

  private async connect (): Promise<void> {
    this.retryTimer = undefined
    this.status({ state: 'connecting', attempt: this.attempt })
    let ticket: string
    try {
      ticket = await this.ticket()
    } catch (error) {
      if (error instanceof TicketRefused) return this.stop('unauthorized')
      this.options.onError?.(error)
      return this.retry(undefined, 'ticket request failed')
    }
    if (this.stopReason !== null) return

    const ws = new this.WebSocket(`${this.options.url.replace(/^http/, 'ws').replace(/\/$/, '')}/ws?token=${encodeURIComponent(ticket)}`)
    this.ws = ws
    let opened = false
    const closed = (code: number, reason: string) => {
      if (this.ws !== ws) return // already handled, or replaced
      this.ws = null
      this.ready = false
      this.onClose(code, reason)
    }
    ws.addEventListener('open', () => { opened = true })
    ws.addEventListener('message', (event: { data: unknown }) => this.onFrame(event.data))
    // A refused upgrade is an error, and a close (1006) in browsers and `ws`; some
    // runtimes fire no close then, so an error before the socket opened counts as one.
    ws.addEventListener('error', () => { if (!opened) closed(1006, 'connection failed') })
    ws.addEventListener('close', (event: { code: number, reason: string }) => closed(event.code, event.reason))
  }

  private async ticket (): Promise<string> {
    const token = typeof this.options.accessToken === 'function' ? await this.options.accessToken() : this.options.accessToken
    const res = await this.fetch(`${this.options.url.replace(/\/$/, '')}/websocket-token/`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
      ...(token ? {} : { credentials: 'include' as const }),
      signal: AbortSignal.timeout(TICKET_TIMEOUT_MS)
    })
    if (res.status === 401) throw new TicketRefused('access token refused')
    if (!res.ok) throw new Error(`ticket request failed with HTTP ${res.status}`)
    const body = await res.json() as { token?: unknown }
    if (typeof body.token !== 'string') throw new Error('ticket response without a token')
    return body.token
  }

  private onFrame (data: unknown): void {
    let frame: { type?: string, userId?: string } & Partial<Message>
    try {
      frame = JSON.parse(String(data))
    } catch (error) {
      this.options.onError?.(error)
      return
    }
    if (frame.type === 'ready') {
      this.ready = true
      this.attempt = 0
      this.status({ state: 'ready', userId: String(frame.userId) })
      this.flushAcks()
    } else if (frame.type === 'message' && typeof frame.id === 'string') {
      const { type: _type, ...message } = frame
      this.handling = this.handling.then(() => this.handle(message as Message))
    }
  }

  /** One message at a time, in order; a repeat is not handed over twice (in `auto` mode it is acknowledged again). */
  private async handle (message: Message): Promise<void> {
    if (this.stopReason !== null) return
    const manual = this.options.ack === 'manual'
    if (!this.seen.has(message.id)) {
      this.remember(message.id)
      try {
        await this.options.onMessage(message)
      } catch (error) {
        // Unacknowledged: the server replays it after the next reconnect.
        this.seen.delete(message.id)
        this.options.onError?.(error)
        return
      }
    }
    if (!manual) this.queueAck(message.id)
  }

  /** Acknowledges messages handed to `onMessage` (for `ack: 'manual'`); sent when connected. */
  ack (...ids: string[]): void {
    if (this.stopReason !== null) return
    for (const id of ids) this.queueAck(id)
  }

  private remember (id: string): void {
    this.seen.add(id)
    if (this.seen.size > (this.options.dedupeSize ?? 10_000)) this.seen.delete(this.seen.values().next().value as string)
  }

  private queueAck (id: string): void {
    this.acks.push(id)
    // Unsent acks only save a replay; beyond this many the oldest are let go.
    if (this.acks.length > 10 * MAX_ACK_IDS) this.acks.splice(0, this.acks.length - 10 * MAX_ACK_IDS)
    if (this.acks.length >= Math.min(this.options.ackBatchSize ?? 100, MAX_ACK_IDS)) this.flushAcks()
    else this.ackTimer ??= setTimeout(() => this.flushAcks(), this.options.ackDelayMs ?? 100)
  }

  private flushAcks (): void {
    clearTimeout(this.ackTimer)
    this.ackTimer = undefined
    const ws = this.ws
    if (ws === null || !this.ready || ws.readyState !== OPEN) return // sent after the next ready
    while (this.acks.length > 0) ws.send(JSON.stringify({ type: 'ack', ids: this.acks.splice(0, MAX_ACK_IDS) }))
  }

  private onClose (code: number, reason: string): void {
    if (this.stopReason !== null) return
    if (code === REVOKED) return this.stop('revoked')
    // An expired session is not a failure: connect again at once with a new ticket.
    this.retry(code === TOKEN_EXPIRED ? 0 : undefined, reason, code)
  }

  private retry (delayMs: number | undefined, reason: string, code = 1006): void {
    const { initialMs = 500, maxMs = 30_000 } = this.options.backoff ?? {}
    const delay = delayMs ?? Math.floor(Math.random() * Math.min(maxMs, initialMs * 2 ** this.attempt))
    this.attempt++
    // Armed before reporting, so a close() from onStatus cancels it.
    this.retryTimer = setTimeout(() => this.reconnect(), delay)
    this.status({ state: 'disconnected', code, reason, retryInMs: delay })
  }

  private stop (reason: StopReason): void {
    if (this.stopReason !== null) return
    this.stopReason = reason
    clearTimeout(this.retryTimer)
    clearTimeout(this.ackTimer)
    this.retryTimer = undefined
    this.ws = null
    this.status({ state: 'stopped', reason })
    this.resolveStopped(reason)
  }

  private status (status: ClientStatus): void {
    this.options.onStatus?.(status)
  }
}

/** Creates a client and starts it. */
export function connect (options: ClientOptions): GatehouseClient {
  return new GatehouseClient(options).start()
}
