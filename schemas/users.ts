import { Type, type Static } from '@sinclair/typebox'
import { IsoDate, Nullable } from './common.js'

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
