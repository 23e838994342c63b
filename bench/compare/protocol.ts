/** What the benchmark parent and its server and client processes say to each other over IPC. */
/** `baseline`: gatehouse built from another checkout (`--baseline <dist>`), for before/after in one run. */
export type SubjectKind = 'gatehouse' | 'ws' | 'socketio' | 'baseline'
export const SUBJECTS: readonly SubjectKind[] = ['gatehouse', 'ws', 'socketio']
export const LABELS: Record<SubjectKind, string> = { gatehouse: 'gatehouse', ws: 'bare ws', socketio: 'socket.io', baseline: 'gatehouse before' }

export type ToServer = { type: 'credentials', count: number } | { type: 'memory' } | { type: 'close' }
export type FromServer =
  | { type: 'listening', port: number, sendPath: string, sendHeaders: Record<string, string>, rss: number, heapUsed: number }
  | { type: 'credentials', credentials: string[] }
  | { type: 'memory', rss: number, heapUsed: number, connections: number }
  | { type: 'closed' }

/** `users[i]` is the user id of `credentials[i]` (a ticket for gatehouse, the id itself for the references). */
export type ToClients =
  | { type: 'connect', kind: Exclude<SubjectKind, 'baseline'>, port: number, credentials: string[], users: string[], concurrency: number, ack: boolean }
  | { type: 'expect', count: number }
  | { type: 'disconnect' }
  | { type: 'stop' }
export type FromClients =
  | { type: 'connected', failed: number, retries: number, firstError: string | null }
  /** Epoch milliseconds (performance.timeOrigin + now): comparable across processes of one machine. */
  | { type: 'expecting' }
  | { type: 'received', first: number, last: number }
  | { type: 'disconnected' }

/** Epoch time in milliseconds with sub-millisecond resolution. */
export const epochNow = () => performance.timeOrigin + performance.now()
