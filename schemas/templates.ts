import { Type, type Static } from '@sinclair/typebox'
import { IsoDate, Nullable, Uuid } from './common.js'

export const TemplateSchema = Type.Object({
  id: Uuid,
  name: Type.String(),
  content: Type.String(),
  organizationId: Nullable(Type.String()),
  ownerId: Nullable(Type.String()),
  createdAt: IsoDate
}, { $id: 'Template', title: 'Template' })
export type Template = Static<typeof TemplateSchema>
