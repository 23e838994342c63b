import { ApiError, DependencyUnavailableError } from '../../../lib/errors.js'
import type { User, UserInput } from '../../../schemas/users.js'
import type { ApiScope, ApiToken } from '../../../schemas/tokens.js'
import type { NewSigningKey, StoredSigningKey } from '../../../schemas/keys.js'
import type { Template } from '../../../schemas/templates.js'
import type { SendInput, SendOutcome, SendResult, StoredMessage } from '../../../schemas/messages.js'
import { CallWithdrawnError, isDataExceptionSqlState, type RpcDriver } from './driver.js'

/** Beyond twice the store timeout, for the database's answer to reach us. */
const VERDICT_GRACE_MS = 1000

/** Users or API tokens changed through a store: what an authentication cache must forget. */
export interface StoreChange { userIds: string[], tokenIds: string[] }

/**
 * The storage contract. One implementation for every backend: each method is one
 * call of a SQL function, so the backends differ only in how they reach Postgres.
 */
export class Store {
  private readonly listeners: Array<(change: StoreChange) => void> = []

  constructor (private readonly driver: RpcDriver, private readonly timeoutMs: number) {}

  /** Called after every change to users or API tokens made through this store. */
  onChange (listener: (change: StoreChange) => void): void { this.listeners.push(listener) }

  private changed (change: StoreChange): void {
    for (const listener of this.listeners) listener(change)
  }

  get backend () { return this.driver.kind }

  /**
   * The Postgres driver has the server cancel a statement at `timeoutMs` and waits for
   * that verdict, so a 503 means the call changed nothing. A call started just before
   * the deadline may need up to another `timeoutMs`; past that (the connection itself is
   * gone) the caller is answered anyway and the outcome is unknown.
   */
  private async call<T> (fn: string, args: Record<string, unknown> = {}): Promise<T> {
    const signal = AbortSignal.timeout(this.timeoutMs * 2 + VERDICT_GRACE_MS)
    try {
      return await untilAborted(this.driver.call(fn, args, signal), signal) as T
    } catch (error) {
      if (signal.aborted || error instanceof CallWithdrawnError || this.driver.isUnavailable(error)) {
        throw new DependencyUnavailableError('Storage', error)
      }
      // Every driver surfaces the SQLSTATE as `code` (supabase-js from PostgREST's answer).
      const code = (error as { code?: unknown } | null)?.code
      if (isDataExceptionSqlState(code)) {
        throw Object.assign(new ApiError(400, 'INVALID_VALUE', 'A value in the request cannot be stored', { sqlstate: code }), { cause: error })
      }
      throw error
    }
  }

  async ping (): Promise<void> { await this.call('gatehouse_health') }

  /** The newest migration applied to the database; null for a schema older than the version function itself. */
  async schemaVersion (): Promise<string | null> {
    try {
      return (await this.call<{ version: string }>('gatehouse_schema_version')).version
    } catch (error) {
      if (isMissingFunction(error)) return null
      throw error
    }
  }

  // Users
  getUser (id: string) { return this.call<User | null>('gatehouse_user_get', { p_id: id }) }
  /** Which of these ids still name a user (one query, whatever their number). */
  usersPresent (ids: string[]) { return this.call<string[]>('gatehouse_users_present', { p_ids: ids }) }
  /** The users among `ids` that exist, in no particular order: one call for a burst of lookups. */
  getUsers (ids: readonly string[]) { return this.call<User[]>('gatehouse_users_get', { p_ids: ids }) }
  getUserByClerkId (clerkId: string) { return this.call<User | null>('gatehouse_user_by_clerk_id', { p_clerk_id: clerkId }) }
  /** Users matching every given criterion (e-mail case-insensitively), oldest first, at most 100. */
  findUsers (by: { clerkId?: string, email?: string }) {
    return this.call<User[]>('gatehouse_user_find', { p_clerk_id: by.clerkId ?? null, p_email: by.email ?? null })
  }

  /** Creates or updates a user; returns null when the clerk_id already belongs to someone else, or the id to a user still being deleted. */
  async upsertUser (input: UserInput): Promise<User | null> {
    const result = await this.call<{ user?: User, error?: string }>('gatehouse_user_upsert', { p_user: input })
    if (result.user) this.changed({ userIds: [result.user.id], tokenIds: [] })
    return result.user ?? null
  }

  /**
   * Deletes by id or clerk id. At once: the user is no longer found (their tokens are
   * refused) and their API tokens, templates and personal fields are gone; their inbox
   * follows in batches (prune), then the row itself.
   */
  async deleteUser (by: { id?: string, clerkId?: string }): Promise<string[]> {
    const result = await this.call<{ deletedIds: string[] }>('gatehouse_user_delete', { p_id: by.id ?? null, p_clerk_id: by.clerkId ?? null })
    if (result.deletedIds.length > 0) this.changed({ userIds: result.deletedIds, tokenIds: [] })
    return result.deletedIds
  }

  /**
   * Applies a Clerk user event once per svix delivery id, in the order Clerk made
   * the changes, and never after the user's deletion (see gatehouse_clerk_user_event).
   */
  async applyClerkUserEvent (event: ClerkUserEvent): Promise<ClerkUserEventOutcome> {
    const outcome = await this.call<ClerkUserEventOutcome>('gatehouse_clerk_user_event', {
      p_delivery_id: event.deliveryId,
      p_type: event.type,
      p_clerk_id: event.clerkId,
      p_event_at: event.eventAt.toISOString(),
      p_user: event.type === 'user.upsert' ? event.user : null
    })
    // A role or a deletion applied here must reach every authentication cache, as through upsertUser/deleteUser.
    if ('user' in outcome) this.changed({ userIds: [outcome.user.id], tokenIds: [] })
    else if ('deletedIds' in outcome && outcome.deletedIds.length > 0) this.changed({ userIds: outcome.deletedIds, tokenIds: [] })
    return outcome
  }

  // API tokens
  /** `scopes` absent or null: the token may do whatever its owner may; limits absent or null: none. */
  async createApiToken (token: NewApiToken): Promise<{ token: ApiToken, user: User } | null> {
    const result = await this.call<{ token?: ApiToken, user?: User }>('gatehouse_token_create', {
      p_id: token.id,
      p_user_id: token.userId,
      p_created_by: token.createdBy,
      p_name: token.name,
      p_expires_at: token.expiresAt,
      p_scopes: token.scopes ?? null,
      p_sends_per_minute: token.sendsPerMinute ?? null,
      p_send_quota: token.sendQuota ?? null
    })
    return result.token && result.user ? { token: result.token, user: result.user } : null
  }

  /** The token record and its owner, in one round trip; marks the token used. */
  authenticateApiToken (id: string) { return this.call<{ token: ApiToken, user: User | null } | null>('gatehouse_token_authenticate', { p_id: id }) }
  listApiTokens (userId: string | null) { return this.call<ApiToken[]>('gatehouse_token_list', { p_user_id: userId }) }
  async revokeApiToken (id: string): Promise<ApiToken | null> {
    const token = await this.call<ApiToken | null>('gatehouse_token_revoke', { p_id: id })
    if (token) this.changed({ userIds: [], tokenIds: [id] })
    return token
  }

  // Signing keys (see plugins/app/keys.ts); private keys arrive and leave encrypted.
  signingKeys () { return this.call<StoredSigningKey[]>('gatehouse_signing_keys') }
  initSigningKeys (current: NewSigningKey, next: NewSigningKey) {
    return this.call<StoredSigningKey[]>('gatehouse_signing_keys_init', { p_current: current, p_next: next })
  }

  /** Null when there are no keys to rotate yet. */
  async rotateSigningKeys (next: NewSigningKey): Promise<StoredSigningKey[] | null> {
    const result = await this.call<{ keys?: StoredSigningKey[] }>('gatehouse_signing_keys_rotate', { p_next: next })
    return result.keys ?? null
  }

  /** The keys after retiring `kid`; an error when it is unknown, current or next. */
  retireSigningKey (kid: string) {
    return this.call<{ keys?: StoredSigningKey[], error?: 'not_found' | 'active', state?: string }>('gatehouse_signing_key_retire', { p_kid: kid })
  }

  // Templates, scoped to an organization (or to their owner when there is none)
  /** Creates a template; null when its scope already has one of that name. */
  async createTemplate (scope: TemplateScope, template: { name: string, content: string }): Promise<Template | null> {
    const result = await this.call<{ template?: Template }>('gatehouse_template_create', { p_org: scope.organizationId, p_owner: scope.ownerId, p_name: template.name, p_content: template.content })
    return result.template ?? null
  }

  listTemplates (scope: TemplateScope) { return this.call<Template[]>('gatehouse_template_list', { p_org: scope.organizationId, p_owner: scope.ownerId }) }
  getTemplate (scope: TemplateScope, id: string) { return this.call<Template | null>('gatehouse_template_get', { p_org: scope.organizationId, p_owner: scope.ownerId, p_id: id }) }
  /** A template by its id or by its name (names are unique within a scope). */
  findTemplate (scope: TemplateScope, idOrName: string) { return this.call<Template | null>('gatehouse_template_find', { p_org: scope.organizationId, p_owner: scope.ownerId, p_key: idOrName }) }
  async deleteTemplate (scope: TemplateScope, id: string): Promise<boolean> {
    const result = await this.call<{ deleted: boolean }>('gatehouse_template_delete', { p_org: scope.organizationId, p_owner: scope.ownerId, p_id: id })
    return result.deleted
  }

  // Messages
  /**
   * Decides a send and writes its rows, or, with `firstChunk`, only its first
   * `firstChunk` rows: `rest` then says where the rows still to write (sendMore) start.
   */
  async send (input: SendInput): Promise<SendOutcome> {
    const result = await this.call<StoredSend & { error?: string, ids?: string[], retryAfter?: number }>('gatehouse_send', {
      p_sender: input.senderId,
      p_sender_org: input.senderOrganizationId,
      p_is_admin: input.senderIsAdmin,
      p_recipients: input.recipientIds,
      p_content: input.content,
      p_template_id: input.templateId,
      p_idempotency_key: input.idempotencyKey,
      p_request_hash: input.requestHash,
      p_token_id: input.tokenId ?? null,
      // Only when chunking: a server of the previous version called it with the arguments above.
      ...(input.firstChunk === undefined ? {} : { p_first_chunk: input.firstChunk, p_lease_seconds: input.leaseSeconds ?? 30 })
    })
    if (result.error === 'invalid_recipients') return { ok: false, error: 'invalid_recipients', ids: result.ids ?? [] }
    if (result.error === 'idempotency_mismatch') return { ok: false, error: 'idempotency_mismatch' }
    if (result.error === 'quota_exhausted') return { ok: false, error: 'quota_exhausted', sendQuota: Number(result.sendQuota) }
    if (result.error === 'in_progress') return { ok: false, error: 'in_progress', retryAfter: Number(result.retryAfter) }
    // A retry of an Idempotency-Key has the first send's body, so the same recipients in the same order,
    // less those deleted while it was written.
    const { id, messages: stored, seqs, count, more, resumed, skipped, claim, ...rest } = result
    const gone = new Set(skipped)
    const messages = stored ?? input.recipientIds.filter(r => !gone.has(r)).map(recipientId => ({ id: id as string, recipientId }))
    const written = seqs?.length ?? 0
    return {
      ok: true,
      result: { ...rest, count: Number(count), messages, seqs: seqs ?? [] },
      rest: more === true ? { from: resumed === true ? 0 : written, resumed: resumed === true, claim: claim ?? null } : null
    }
  }

  /** A further chunk of an accepted send (see gatehouse_send_more); rows that exist are skipped. */
  sendMore (chunk: SendChunk) {
    return this.call<{ recipients: string[], seqs: number[], skipped: string[] }>('gatehouse_send_more', {
      p_body_id: chunk.id,
      p_recipients: chunk.recipientIds,
      p_sender: chunk.senderId,
      p_idempotency_key: chunk.idempotencyKey,
      p_lease_seconds: chunk.leaseSeconds,
      p_claim: chunk.claim,
      p_resume: chunk.resumed
    })
  }

  /** Records a chunked send's response for its Idempotency-Key; null gives up the claim (a retry may take over at once). */
  async finishSend (senderId: string, idempotencyKey: string, response: Record<string, unknown> | null): Promise<void> {
    await this.call('gatehouse_send_finish', { p_sender: senderId, p_idempotency_key: idempotencyKey, p_response: response })
  }

  /** Unacknowledged messages after `afterSeq`, oldest first. */
  pendingMessages (recipientId: string, afterSeq: number, limit: number) {
    return this.call<StoredMessage[]>('gatehouse_pending', { p_recipient: recipientId, p_after_seq: afterSeq, p_limit: limit })
  }

  /** The recipients among `ids` with unacknowledged messages: only their sockets need a replay. */
  pendingRecipients (ids: readonly string[]) { return this.call<string[]>('gatehouse_pending_recipients', { p_recipients: ids }) }

  /**
   * Every message after a cursor, acknowledged or not, in commit order; only messages
   * no later commit can precede (see the inbox migration), so following the last
   * message's position never skips one.
   */
  inbox (recipientId: string, after: InboxPosition | null, limit: number) {
    return this.call<StoredMessage[]>('gatehouse_inbox', {
      p_recipient: recipientId, p_after_xact: after?.xact ?? null, p_after_seq: after?.seq ?? 0, p_limit: limit
    })
  }

  /** Acknowledges a recipient's messages; ids of other recipients' messages are ignored. */
  ack (recipientId: string, ids: string[]): Promise<number> {
    return this.ackMany(ids.map(id => ({ recipientId, id })))
  }

  /** Acknowledgements of many recipients in one statement. */
  async ackMany (acks: Array<{ recipientId: string, id: string }>): Promise<number> {
    const result = await this.call<{ acked: number }>('gatehouse_ack', {
      p_recipients: acks.map(a => a.recipientId),
      p_ids: acks.map(a => a.id)
    })
    return Number(result.acked)
  }

  /**
   * One bounded batch of pruning (see gatehouse_prune); repeat while `more`. Calls from
   * many processes are serialized, and a finished run is not repeated before `everyMs`.
   */
  prune (settings: PruneSettings): Promise<PruneOutcome> {
    return this.call<PruneOutcome>('gatehouse_prune', {
      p_acked_ttl: settings.ackedTtl,
      p_unacked_ttl: settings.unackedTtl,
      p_idempotency_ttl: settings.idempotencyTtl,
      p_batch: settings.batch,
      p_every_ms: settings.everyMs
    })
  }

  close () { return this.driver.close() }
}

/** Seconds each kind of data is kept (0: for good, for messages), rows per batch, and the pause between runs. */
export interface PruneSettings { ackedTtl: number, unackedTtl: number, idempotencyTtl: number, batch: number, everyMs: number }

export type PruneOutcome =
  | { ran: false, reason: 'busy' | 'not_due', nextAt?: string }
  | { ran: true, more: boolean, acked: number, unacked: number, userMessages: number, users: number, bodies: number, idempotencyKeys: number }

export interface NewApiToken {
  id: string
  userId: string
  createdBy: string | null
  name: string | null
  expiresAt: string | null
  scopes?: readonly ApiScope[] | null
  sendsPerMinute?: number | null
  sendQuota?: number | null
}

/**
 * gatehouse_send's answer: the send's id (every message's) and the seqs in recipient
 * order, or, replaying a response stored before 20261122010000, its messages.
 */
interface StoredSend {
  id?: string
  count: number
  createdAt: string
  replayed: boolean
  seqs?: number[]
  messages?: SendResult['messages']
  /** For a token with a send quota: the quota, and what is left after the first send. */
  sendQuota?: number
  sendQuotaRemaining?: number
  /** Rows remain to be written by sendMore; `resumed`: none written by this call (a taken-over send). */
  more?: boolean
  resumed?: boolean
  /** Recipients deleted while a chunked send was written: they got nothing. */
  skipped?: string[]
  /** A chunked send's hold on its Idempotency-Key, for sendMore. */
  claim?: string | null
}

/** A chunk of an accepted send: its id, and recipients to write. */
export interface SendChunk {
  id: string
  senderId: string
  recipientIds: string[]
  idempotencyKey: string | null
  leaseSeconds: number
  /** The send's claim of its key (from send); a chunk whose claim was taken over skips rows that exist. */
  claim: string | null
  /** A taken-over send: some rows may exist already, and are skipped. */
  resumed: boolean
}

/** A place in an inbox: the writing transaction and seq of the last message read; `xact` null for a seq-only cursor from older versions. */
export interface InboxPosition { xact: string | null, seq: number }

export type ClerkUserEvent = { deliveryId: string, clerkId: string, eventAt: Date } &
  ({ type: 'user.upsert', user: UserInput } | { type: 'user.deleted' })

export type ClerkUserEventOutcome =
  | { outcome: 'applied', user: User }
  | { outcome: 'applied', deletedIds: string[] }
  | { outcome: 'duplicate' | 'stale' | 'deleted' | 'conflict' }

export interface TemplateScope { organizationId: string | null, ownerId: string }

/** Templates belong to a user's organization, or to the user alone when they have none. */
export const templateScope = (user: User): TemplateScope => ({ organizationId: user.organizationId, ownerId: user.id })

/** Postgres's undefined_function, or PostgREST's "no function in the schema cache". */
function isMissingFunction (error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return code === '42883' || code === 'PGRST202'
}

/** Settles with `work`, or rejects when `signal` aborts first: a driver that ignores the signal cannot hold a caller past the timeout. */
function untilAborted<T> (work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}
