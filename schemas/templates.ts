import { Type, type Static } from '@sinclair/typebox'
import { IsoDate, Nullable, Text, Uuid } from './common.js'

export const TemplateSchema = Type.Object({
  id: Uuid,
  name: Type.String(),
  content: Type.String(),
  organizationId: Nullable(Type.String()),
  ownerId: Nullable(Type.String()),
  createdAt: IsoDate
}, { $id: 'Template', title: 'Template' })
export type Template = Static<typeof TemplateSchema>

export const CreateTemplateBodySchema = Type.Object({
  name: Text({ minLength: 1, maxLength: 200 }),
  // MAX_CONTENT_BYTES (UTF-8 bytes) is checked by the route and answers 413.
  content: Text({ minLength: 1, description: 'Text with {{placeholders}}; at most MAX_CONTENT_BYTES bytes of UTF-8' })
}, { title: 'CreateTemplateBody', description: 'A template: text with {{placeholders}}' })
export type CreateTemplateBody = Static<typeof CreateTemplateBodySchema>

export const TemplateParamsSchema = Type.Object({ id: Uuid })

export const TemplateResponseSchema = Type.Object({ success: Type.Literal(true), template: TemplateSchema }, { title: 'TemplateResponse', description: 'The template' })
export const TemplateListResponseSchema = Type.Object({ success: Type.Literal(true), templates: Type.Array(TemplateSchema) }, { title: 'TemplateListResponse', description: 'The templates of the caller\'s organization (or the caller\'s own)' })
export const TemplateDeletedResponseSchema = Type.Object({ success: Type.Literal(true), id: Uuid }, { title: 'TemplateDeletedResponse', description: 'The template was deleted' })
