import { Type, type Static } from '@sinclair/typebox'
import { IsoDate, Nullable, Text } from './common.js'

export const RoleSchema = Type.Union([Type.Literal('user'), Type.Literal('admin')])
export type Role = Static<typeof RoleSchema>

export const UserSchema = Type.Object({
  id: Type.String(),
  clerkId: Nullable(Type.String()),
  email: Nullable(Type.String()),
  name: Nullable(Type.String()),
  planType: Type.String(),
  credits: Type.Integer(),
  organizationId: Nullable(Type.String()),
  role: RoleSchema,
  createdAt: IsoDate,
  updatedAt: IsoDate
}, { $id: 'User', title: 'User' })
export type User = Static<typeof UserSchema>

/** Fields accepted when creating or updating a user; absent keys keep their value. */
export interface UserInput {
  id?: string
  clerk_id?: string | null
  email?: string | null
  name?: string | null
  plan_type?: string
  credits?: number
  organization_id?: string | null
  role?: Role
}

export const FindUsersQuerySchema = Type.Object({
  clerkId: Type.Optional(Text({ minLength: 1, maxLength: 200, description: "The Clerk user id (`user_…`), as in the webhook's `data.id`" })),
  email: Type.Optional(Text({ minLength: 1, maxLength: 320, description: 'An e-mail address, matched case-insensitively' }))
}, { additionalProperties: false })
export type FindUsersQuery = Static<typeof FindUsersQuerySchema>

export const FindUsersResponseSchema = Type.Object({
  success: Type.Literal(true),
  users: Type.Array(UserSchema, { description: 'Matching users, oldest first, at most 100' })
}, { $id: 'FindUsersResponse', title: 'FindUsersResponse', description: 'The users found (an empty list when none)' })
