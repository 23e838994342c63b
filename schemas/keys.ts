import { Type, type Static } from '@sinclair/typebox'

export const SIGNING_KEY_STATES = ['next', 'current', 'previous', 'retired'] as const
export type SigningKeyState = typeof SIGNING_KEY_STATES[number]

/** A public key as RFC 7517 writes it (EC P-256 for ES256). */
export const PublicJwkSchema = Type.Object({
  kty: Type.String(),
  crv: Type.String(),
  x: Type.String(),
  y: Type.String(),
  kid: Type.String(),
  alg: Type.String(),
  use: Type.String()
})
export type PublicJwk = Static<typeof PublicJwkSchema>

export const JwksSchema = Type.Object({ keys: Type.Array(PublicJwkSchema) }, { title: 'Jwks', description: 'The public keys of access tokens and tickets (RFC 7517 JWK Set)' })

/** A key as the store keeps it; `privateKey` (encrypted) only for the current key. */
export interface StoredSigningKey {
  kid: string
  alg: 'ES256'
  state: SigningKeyState
  publicJwk: PublicJwk
  privateKey: string | null
  createdAt: string
  stateChangedAt: string
}
export type NewSigningKey = Pick<StoredSigningKey, 'kid' | 'alg' | 'publicJwk'> & { privateKey: string }
