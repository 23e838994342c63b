import type { FastifyBaseLogger } from 'fastify'
import type { WebSocket } from 'ws'
import { WsClose } from '../../../schemas/ws.js'
import type { StoredMessage } from '../../../schemas/messages.js'
import type { MessageBatch } from './index.js'
import { messageFrame, messageTail, readyFrame } from './frames.js'
import { batchLoader } from '../../../lib/batch.js'

/** A text frame's payload: a string, or UTF-8 already encoded once for every recipient of a send. */
type Frame = string | Buffer

/** Sent as a text frame whatever the payload's type. */
const TEXT = { binary: false }

interface Held { seq: number, frame: Frame }

/**
 * While a socket replays, live messages wait in `held`, or only their lowest seq
 * once too many arrived.
 */
interface Replay { held: Held[], rescanFrom: number | null }

/**
 * Seqs a socket was sent lately, by replay and live (each list bounded). A
 * message committed just before a replay query is both read by it and published
 * live, and a catch-up re-reads what is still unacknowledged and was sent live:
 * either way it must reach the socket once.
 */
const RECENT_MAX = 256

/**
 * One socket. Kept small: 20,000 of them must fit in little memory. Its listeners
 * are shared by every socket (they find it through `LocalHub.bySocket`), and the
 * seq lists exist only once something was sent.
 */
class Connection {
  alive = true
  closed = false
  /** Acknowledgements being written; the socket is not read meanwhile. */
  acking = 0
  replay: Replay | null = { held: [], rescanFrom: null }
  replayed: number[] | null = null
  sentLive: number[] | null = null
  constructor (
    readonly socket: WebSocket,
    readonly userId: string,
    /** Milliseconds since epoch when the credential behind the socket ends. */
    readonly expiresAt: number | null
  ) {}
}

export interface LocalHubOptions {
  store: {
    pendingMessages (userId: string, afterSeq: number, limit: number): Promise<StoredMessage[]>
    usersPresent (ids: string[]): Promise<string[]>
    pendingRecipients (userIds: readonly string[]): Promise<string[]>
  }
  log: FastifyBaseLogger
  sendBufferBytes: number
  heartbeatMs: number
  /** Messages per replay query. */
  pageSize?: number
  /** Live messages a replaying socket holds before it falls back to another replay pass. */
  heldMax?: number
  /** Users checked per store query when a resync re-validates the sockets. */
  checkBatch?: number
}

const bySeq = (a: Held, b: Held) => a.seq - b.seq

function remember (list: number[] | null, seq: number): number[] {
  if (list === null) return [seq]
  list.push(seq)
  if (list.length > RECENT_MAX) list.shift()
  return list
}

/** A user's sockets here: most users hold one, which then needs no Set of its own. */
type UserSockets = Connection | Set<Connection>

/**
 * The sockets of this process, by user. Replays what is pending on connect,
 * then delivers live batches; one timer drives heartbeats and expiry for all.
 */
export class LocalHub {
  private readonly users = new Map<string, UserSockets>()
  /** Socket to Connection, for the listeners every socket shares; kept until the socket is garbage. */
  private readonly bySocket = new WeakMap<WebSocket, Connection>()
  private readonly onPong: (this: WebSocket) => void
  private readonly onClose: (this: WebSocket) => void
  private readonly store: LocalHubOptions['store']
  private readonly log: FastifyBaseLogger
  private readonly sendBufferBytes: number
  private readonly heartbeatMs: number
  private readonly pageSize: number
  private readonly heldMax: number
  private readonly checkBatch: number
  private readonly timer: NodeJS.Timeout
  /** Whether a user has anything to replay, asked for every socket of a moment in one call. */
  private readonly hasPending
  private lastPing = Date.now()
  private sockets = 0
  private frames = 0
  draining = false

  constructor (options: LocalHubOptions) {
    this.store = options.store
    this.log = options.log
    this.sendBufferBytes = options.sendBufferBytes
    this.heartbeatMs = options.heartbeatMs
    this.pageSize = options.pageSize ?? 500
    this.heldMax = options.heldMax ?? 100
    this.checkBatch = options.checkBatch ?? 1000
    this.hasPending = batchLoader<string, boolean>(async userIds => {
      const pending = new Set(await this.store.pendingRecipients(userIds))
      return userIds.map(id => pending.has(id))
    })
    const { bySocket } = this
    this.onPong = function (this: WebSocket) {
      const conn = bySocket.get(this)
      if (conn !== undefined) conn.alive = true
    }
    const forget = (conn: Connection) => this.forget(conn)
    this.onClose = function (this: WebSocket) {
      const conn = bySocket.get(this)
      if (conn !== undefined) forget(conn)
    }
    this.timer = setInterval(() => this.tick(), Math.min(this.heartbeatMs, 1000))
    this.timer.unref()
  }

  get connections () { return this.sockets }
  get connectedUsers () { return this.users.size }
  /** Sockets this user holds on this process. */
  socketsOf (userId: string) {
    const sockets = this.users.get(userId)
    return sockets === undefined ? 0 : sockets instanceof Set ? sockets.size : 1
  }

  get delivered () { return this.frames }

  /** Registers an authenticated socket, says ready, replays what is pending, then goes live. */
  attach (socket: WebSocket, userId: string, expiresAt: number | null): void {
    if (this.draining) {
      socket.close(WsClose.GOING_AWAY, 'server shutting down')
      return
    }
    const conn = new Connection(socket, userId, expiresAt)
    const conns = this.users.get(userId)
    if (conns === undefined) this.users.set(userId, conn)
    else if (conns instanceof Set) conns.add(conn)
    else this.users.set(userId, new Set([conns, conn]))
    this.sockets++
    this.bySocket.set(socket, conn)
    socket.on('pong', this.onPong)
    socket.on('close', this.onClose)
    socket.send(readyFrame(userId))
    // Registered before the first query: anything committed later is published to this socket too.
    this.startReplay(conn)
  }

  /**
   * Writes a socket's acknowledgements for its user. Reading pauses while they are
   * written, so a client cannot queue writes without bound.
   */
  acknowledge (socket: WebSocket, ids: string[], write: (userId: string, ids: string[]) => Promise<void>): void {
    const conn = this.bySocket.get(socket)
    if (conn === undefined) return
    if (conn.acking++ === 0) socket.pause()
    write(conn.userId, ids).finally(() => { if (--conn.acking === 0) socket.resume() })
  }

  private startReplay (conn: Connection): void {
    this.replay(conn).catch(err => {
      if (conn.closed) return
      this.log.warn({ err, userId: conn.userId }, 'replay failed, closing socket')
      this.close(conn, WsClose.TRY_AGAIN_LATER, 'store unavailable')
    })
  }

  /**
   * Delivers a batch to the recipients connected here. A send's messages share
   * one id, so their frame is serialized and encoded once and the same bytes go
   * to every socket (batches from older processes, one id per message, get one
   * frame per message).
   */
  deliver (batch: MessageBatch): void {
    let tail: string | undefined
    let frameId: string | undefined
    let frame: Buffer | undefined
    for (const message of batch.messages) {
      const conns = this.users.get(message.recipientId)
      if (conns === undefined) continue
      if (message.id !== frameId) {
        tail ??= messageTail(batch)
        frame = Buffer.from(messageFrame(message.id, tail))
        frameId = message.id
      }
      if (conns instanceof Set) for (const conn of conns) this.offer(conn, message.seq, frame as Buffer)
      else this.offer(conns, message.seq, frame as Buffer)
    }
  }

  /**
   * Live events may have been missed (the subscription was lost): every socket
   * reads its unacknowledged messages from the store again, skipping those it
   * was just sent, while new live ones wait behind the replay as on connect.
   * Missed too may be the closing of a removed user's sockets: every user holding
   * one here is checked against the store again.
   */
  resync (): void {
    this.revalidate().catch(err => this.log.error({ err }, 'socket re-validation failed'))
    this.each(conn => {
      if (conn.replay !== null) {
        // Already replaying: one more pass from the start once this one ends.
        conn.replay.rescanFrom = 0
        return
      }
      conn.replay = { held: [], rescanFrom: null }
      this.startReplay(conn)
    })
  }

  /**
   * Closes with 4003 the sockets of users the store no longer has, one query per
   * batch of users. A batch the store cannot answer has its sockets closed with
   * 1013: their clients reconnect and are authenticated afresh, rather than a
   * removed user keeping a socket for as long as the store is down.
   */
  async revalidate (): Promise<void> {
    const userIds = [...this.users.keys()]
    for (let start = 0; start < userIds.length; start += this.checkBatch) {
      const batch = userIds.slice(start, start + this.checkBatch)
      let present: Set<string>
      try {
        present = new Set(await this.store.usersPresent(batch))
      } catch (err) {
        this.log.warn({ err, users: batch.length }, 'users could not be re-checked after a resync; closing their sockets')
        for (const userId of batch) this.disconnect(userId, WsClose.TRY_AGAIN_LATER, 'store unavailable')
        continue
      }
      for (const userId of batch) {
        if (!present.has(userId)) this.disconnect(userId, WsClose.REVOKED, 'user removed')
      }
    }
  }

  disconnect (userId: string, code: number, reason: string): void {
    const conns = this.users.get(userId)
    if (conns === undefined) return
    if (conns instanceof Set) for (const conn of conns) this.close(conn, code, reason)
    else this.close(conns, code, reason)
  }

  /** Closes every socket with 1001, waits (bounded) for the peers to answer, then cuts the rest. */
  async drain (waitMs: number): Promise<void> {
    this.draining = true
    const sockets: WebSocket[] = []
    this.each(conn => {
      sockets.push(conn.socket)
      this.close(conn, WsClose.GOING_AWAY, 'server shutting down')
    })
    if (sockets.length === 0) return
    let timeout: NodeJS.Timeout | undefined
    await Promise.race([
      Promise.all(sockets.map(socket => new Promise(resolve => socket.once('close', resolve)))),
      new Promise(resolve => { timeout = setTimeout(resolve, waitMs) })
    ])
    clearTimeout(timeout)
    for (const socket of sockets) socket.terminate()
  }

  stop (): void {
    clearInterval(this.timer)
  }

  private async replay (conn: Connection): Promise<void> {
    let cursor = 0
    // Most sockets have nothing to replay. Asked only once the socket is registered:
    // what the question does not see commits later, and is published to it live.
    let nothingPending = !(await this.hasPending.load(conn.userId))
    for (;;) {
      const page = nothingPending ? [] : await this.store.pendingMessages(conn.userId, cursor, this.pageSize)
      nothingPending = false
      if (conn.closed) return
      const replay = conn.replay as Replay
      for (const message of page) {
        cursor = message.seq
        if (conn.replayed?.includes(message.seq) || conn.sentLive?.includes(message.seq)) continue
        if (!await this.sendPaced(conn, messageFrame(message.id, messageTail(message)))) return
        conn.replayed = remember(conn.replayed, message.seq)
      }
      if (page.length === this.pageSize) continue
      if (replay.rescanFrom !== null) {
        // Live messages overflowed: read them from the store rather than hold them.
        cursor = Math.min(cursor, replay.rescanFrom)
        replay.rescanFrom = null
        continue
      }
      conn.replay = null
      replay.held.sort(bySeq)
      for (const held of replay.held) {
        if (conn.replayed?.includes(held.seq)) continue
        if (!this.send(conn, held.frame)) return
        conn.sentLive = remember(conn.sentLive, held.seq)
      }
      return
    }
  }

  /** A live message for one socket: sent now, or held while the socket still replays. */
  private offer (conn: Connection, seq: number, frame: Frame): void {
    if (conn.replayed?.includes(seq)) return
    const replay = conn.replay
    if (replay === null) {
      if (this.send(conn, frame)) conn.sentLive = remember(conn.sentLive, seq)
      return
    }
    if (replay.rescanFrom === null && replay.held.length < this.heldMax) {
      replay.held.push({ seq, frame })
      return
    }
    let from = seq - 1
    for (const held of replay.held) from = Math.min(from, held.seq - 1)
    replay.held = []
    replay.rescanFrom = Math.min(replay.rescanFrom ?? from, from)
  }

  /**
   * Replay goes at the reader's pace: past half the send buffer it waits for
   * the socket to flush. A reader that stopped altogether stops answering
   * pings and is dropped by the heartbeat.
   */
  private async sendPaced (conn: Connection, frame: Frame): Promise<boolean> {
    if (conn.closed) return false
    if (conn.socket.bufferedAmount < this.sendBufferBytes / 2) return this.send(conn, frame)
    const { socket } = conn
    await new Promise<void>(resolve => {
      const flushed = () => {
        socket.off('close', flushed)
        resolve()
      }
      socket.once('close', flushed)
      socket.send(frame, TEXT, flushed)
    })
    this.frames++
    return !conn.closed
  }

  /** False when the socket is gone or was closed for reading too slowly. */
  private send (conn: Connection, frame: Frame): boolean {
    if (conn.closed) return false
    conn.socket.send(frame, TEXT)
    this.frames++
    if (conn.socket.bufferedAmount > this.sendBufferBytes) {
      // Its messages stay unacknowledged in the store and are replayed on reconnect.
      this.close(conn, WsClose.SLOW_CONSUMER, 'slow consumer')
      return false
    }
    return true
  }

  private close (conn: Connection, code: number, reason: string): void {
    if (conn.closed) return
    this.forget(conn)
    conn.socket.close(code, reason)
  }

  private forget (conn: Connection): void {
    conn.closed = true
    const conns = this.users.get(conn.userId)
    if (conns === conn) {
      this.users.delete(conn.userId)
    } else if (conns instanceof Set && conns.delete(conn)) {
      // Back to one socket: back to no Set.
      if (conns.size === 1) this.users.set(conn.userId, conns.values().next().value as Connection)
    } else {
      return
    }
    this.sockets--
  }

  /** Calls `fn` for every socket here; `fn` may close the socket. */
  private each (fn: (conn: Connection) => void): void {
    for (const conns of this.users.values()) {
      if (conns instanceof Set) for (const conn of conns) fn(conn)
      else fn(conns)
    }
  }

  private tick (): void {
    const now = Date.now()
    const ping = now - this.lastPing >= this.heartbeatMs
    if (ping) this.lastPing = now
    this.each(conn => {
      if (conn.expiresAt !== null && conn.expiresAt <= now) {
        this.close(conn, WsClose.TOKEN_EXPIRED, 'token expired')
      } else if (ping && !conn.alive) {
        // No pong since the previous ping: the peer is gone.
        this.forget(conn)
        conn.socket.terminate()
      } else if (ping) {
        conn.alive = false
        conn.socket.ping()
      }
    })
  }
}
