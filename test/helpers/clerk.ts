import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto'
import { createSigner } from 'fast-jwt'
import { Webhook } from 'svix'

/** A stand-in Clerk instance: an RSA key pair signing session tokens shaped like Clerk's. */
export function clerkIssuer () {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const publicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString()
  const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const sign = createSigner({ key: privatePem, algorithm: 'RS256', kid: 'ins_test' })

  return {
    publicPem,
    /** A session token; override or delete (undefined) any claim. */
    sessionToken (claims: Record<string, unknown> = {}) {
      const now = Math.floor(Date.now() / 1000)
      const payload: Record<string, unknown> = {
        iss: 'https://clerk.example.com',
        sub: 'user_clerk_1',
        sid: 'sess_1',
        azp: 'https://dashboard.example.com',
        iat: now - 5,
        nbf: now - 5,
        exp: now + 60,
        ...claims
      }
      for (const key of Object.keys(payload)) if (payload[key] === undefined) delete payload[key]
      return sign(payload)
    }
  }
}

/** A fresh Clerk webhook signing secret, in svix's format. */
export const webhookSecret = () => `whsec_${randomBytes(24).toString('base64')}`

/** An inject() request delivering `body` to the Clerk webhook, signed with `secret` as svix signs, under a new delivery id. */
export function signedClerkDelivery (secret: string, body: unknown) {
  const payload = JSON.stringify(body)
  const id = `msg_${randomUUID()}`
  const at = new Date()
  return {
    method: 'POST' as const,
    url: '/api/webhooks/clerk',
    payload,
    headers: {
      'content-type': 'application/json',
      'svix-id': id,
      'svix-timestamp': String(Math.floor(at.getTime() / 1000)),
      'svix-signature': new Webhook(secret).sign(id, at, payload)
    }
  }
}
