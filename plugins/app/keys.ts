import fp from 'fastify-plugin'
import { createCipheriv, createDecipheriv, createPublicKey, generateKeyPairSync, hkdfSync, randomBytes, randomUUID, type KeyObject } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { Store } from './supabase/store.js'
import type { NewSigningKey, PublicJwk, StoredSigningKey } from '../../schemas/keys.js'

/**
 * Private signing keys are stored encrypted (AES-256-GCM, the kid as associated
 * data so a ciphertext cannot be moved to another key's row) under a key derived
 * from JWT_KEY_ENCRYPTION_KEY, which only the service holds.
 */
function encryptionKey (secret: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'gatehouse', 'signing-key-encryption', 32))
}

export function encryptPrivateKey (secret: string, kid: string, pem: string): string {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', encryptionKey(secret), iv).setAAD(Buffer.from(kid))
  const sealed = Buffer.concat([cipher.update(pem, 'utf8'), cipher.final()])
  return `v1.${Buffer.concat([iv, cipher.getAuthTag(), sealed]).toString('base64url')}`
}

export function decryptPrivateKey (secret: string, kid: string, stored: string): string {
  const raw = Buffer.from(stored.replace(/^v1\./, ''), 'base64url')
  const decipher = createDecipheriv('aes-256-gcm', encryptionKey(secret), raw.subarray(0, 12)).setAAD(Buffer.from(kid))
  decipher.setAuthTag(raw.subarray(12, 28))
  return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8')
}

/** A fresh ES256 key pair, its private half already encrypted for the store. */
export function generateSigningKey (secret: string): NewSigningKey {
  const kid = randomUUID()
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const jwk = publicKey.export({ format: 'jwk' }) as { kty: string, crv: string, x: string, y: string }
  const publicJwk: PublicJwk = { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, kid, alg: 'ES256', use: 'sig' }
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }) as string
  return { kid, alg: 'ES256', publicJwk, privateKey: encryptPrivateKey(secret, kid, pem) }
}

export class KeyDecryptionError extends Error {
  constructor (kid: string) {
    super(`the current signing key ${kid} cannot be decrypted: JWT_KEY_ENCRYPTION_KEY is not the key it was stored with`)
    this.name = 'KeyDecryptionError'
  }
}

/**
 * The signing keys every process shares, as last read from the store. Tokens are
 * signed with the current key; next, current and previous keys verify; a retired
 * or unknown kid verifies nothing. Reading is synchronous (verification runs on
 * every request); `load()` refreshes from the store.
 */
export class KeyRing {
  private keys = new Map<string, { state: StoredSigningKey['state'], jwk: PublicJwk, publicKey: KeyObject }>()
  private signer: { kid: string, privateKeyPem: string } | null = null
  /** Bumped on every load that changed something, so token verifiers know to rebuild. */
  version = 0
  private fingerprint = ''

  constructor (private readonly store: Store, private readonly secret: string) {}

  /** Creates the first current and next keys when the store has none (any number of processes may race). */
  async ensure (): Promise<void> {
    let keys = await this.store.signingKeys()
    if (!keys.some(key => key.state === 'current')) {
      keys = await this.store.initSigningKeys(generateSigningKey(this.secret), generateSigningKey(this.secret))
    }
    this.apply(keys)
  }

  async load (): Promise<void> {
    this.apply(await this.store.signingKeys())
  }

  private lastEagerLoad = 0
  /** Reads the keys again in the background, at most once a second (an unknown kid was shown). */
  refreshSoon (): void {
    if (Date.now() - this.lastEagerLoad < 1000) return
    this.lastEagerLoad = Date.now()
    this.load().catch(() => {})
  }

  apply (stored: StoredSigningKey[]): void {
    const fingerprint = stored.map(key => `${key.kid}:${key.state}`).join(',')
    if (fingerprint === this.fingerprint) return
    const keys = new Map<string, { state: StoredSigningKey['state'], jwk: PublicJwk, publicKey: KeyObject }>()
    let signer: KeyRing['signer'] = null
    for (const key of stored) {
      keys.set(key.kid, { state: key.state, jwk: key.publicJwk, publicKey: createPublicKey({ key: key.publicJwk, format: 'jwk' }) })
      if (key.state === 'current' && key.privateKey) {
        try {
          signer = { kid: key.kid, privateKeyPem: decryptPrivateKey(this.secret, key.kid, key.privateKey) }
        } catch {
          throw new KeyDecryptionError(key.kid)
        }
      }
    }
    this.keys = keys
    this.signer = signer
    this.fingerprint = fingerprint
    this.version++
  }

  /** The key new tokens are signed with. */
  current (): { kid: string, privateKeyPem: string } | null { return this.signer }

  /** The public key of a kid that may verify tokens now, or null (unknown or retired). */
  verificationKey (kid: string): KeyObject | null {
    const key = this.keys.get(kid)
    return key && key.state !== 'retired' ? key.publicKey : null
  }

  /** What GET /.well-known/jwks.json publishes: every key that verifies, next included. */
  jwks (): { keys: PublicJwk[] } {
    return { keys: [...this.keys.values()].filter(key => key.state !== 'retired').map(key => key.jwk) }
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The shared signing keys with JWT_ALGORITHM=ES256; null with HS256. */
    keyRing: KeyRing | null
  }
}

/** How often a process reads the key set again without being told (with Redis it is told at once). */
export const KEY_REFRESH_MS = 10_000

const keysChannel = (prefix: string) => `${prefix}keys`

/** Tells every process to read the keys again (the CLI after `keys rotate` and `keys retire`). */
export async function publishKeysChanged (options: { url: string, prefix: string, timeoutMs: number }): Promise<void> {
  const { Redis } = await import('ioredis')
  const redis = new Redis(options.url, { connectTimeout: options.timeoutMs, commandTimeout: options.timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null })
  redis.on('error', () => {})
  try {
    await redis.publish(keysChannel(options.prefix), 'changed')
  } finally {
    redis.disconnect()
  }
}

export default fp(async function keys (fastify: FastifyInstance) {
  const { config } = fastify
  if (config.JWT_ALGORITHM !== 'ES256') {
    fastify.decorate('keyRing', null)
    return
  }
  const ring = new KeyRing(fastify.store, config.JWT_KEY_ENCRYPTION_KEY as string)
  await ring.ensure()
  fastify.tokens.keyRing = ring
  fastify.decorate('keyRing', ring)

  const refresh = () => {
    ring.load().catch((err: unknown) => fastify.log.warn({ err }, 'signing keys could not be refreshed; keeping the last ones read'))
  }
  const timer = setInterval(refresh, KEY_REFRESH_MS)
  timer.unref()
  fastify.addHook('onClose', async () => { clearInterval(timer) })

  // With Redis a rotation reaches every process at once: a connection of its own
  // (the hub manages its subscriptions itself), which reads the keys again after
  // each reconnect in case a notice was missed meanwhile.
  if (config.REDIS_URL) {
    const { Redis } = await import('ioredis')
    const subscriber = new Redis(config.REDIS_URL, { connectTimeout: config.REDIS_TIMEOUT_MS, retryStrategy: (attempt: number) => Math.min(attempt * 100, 1000) })
    subscriber.on('error', () => {})
    subscriber.on('ready', refresh)
    subscriber.on('message', refresh)
    subscriber.subscribe(keysChannel(config.REDIS_KEY_PREFIX)).catch(() => {})
    fastify.addHook('onClose', async () => { subscriber.disconnect() })
  }
}, { name: 'keys', dependencies: ['env', 'supabase', 'tokens'] })
