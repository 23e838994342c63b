import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import SwaggerParser from '@apidevtools/swagger-parser'
import openapiTS, { astToString } from 'openapi-typescript'
import t from 'tap'
import ts from 'typescript'
import { accessTokenFor, apiTokenFor, buildApp, createUser } from './helpers/app.js'

interface Operation {
  summary?: string
  description?: string
  security?: Array<Record<string, string[]>>
  responses: Record<string, { description: string }>
  requestBody?: { content: Record<string, { schema: Record<string, unknown> }> }
  parameters?: Array<{ name: string, in: string }>
}
type Document = {
  paths: Record<string, Record<string, Operation>>
  components: { schemas: Record<string, { title?: string }>, securitySchemes: Record<string, Record<string, string>> }
}

const operations = (doc: Document) => Object.entries(doc.paths).flatMap(([path, methods]) =>
  Object.entries(methods).map(([method, operation]) => ({ path, method, operation })))
const schemesOf = (operation: Operation) => (operation.security ?? []).flatMap(requirement => Object.keys(requirement)).sort()

t.test('the OpenAPI document', async t => {
  const app = await buildApp(t)
  const res = await app.inject({ method: 'GET', url: '/docs/json' })
  t.equal(res.statusCode, 200)
  const doc = res.json() as Document

  t.test('validates as OpenAPI 3', async t => {
    // The parser dereferences in place: give it a copy.
    await t.resolves(SwaggerParser.validate(structuredClone(doc) as never))
  })

  t.test('names every component schema', async t => {
    const names = Object.keys(doc.components.schemas)
    t.same(names.filter(name => /^def-\d+$/.test(name)), [], 'no generated def-N names')
    for (const name of ['Error', 'User', 'ApiToken', 'Template', 'ClerkUser', 'ClerkDeletedUser']) t.ok(names.includes(name), name)
    for (const [name, schema] of Object.entries(doc.components.schemas)) t.equal(schema.title, name, `${name} has its title`)
  })

  t.test('generates clean types with openapi-typescript: every schema by its name, and they compile', async t => {
    const types = astToString(await openapiTS(structuredClone(doc) as never))
    const names = Object.keys(doc.components.schemas)
    t.notMatch(types, /def-\d+/, 'no generated def-N names')
    for (const name of names) t.match(types, new RegExp(`^\\s+${name}: \\{`, 'm'), `components.schemas.${name}`)

    // A client's use of the generated types, compiled strictly.
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-openapi-types-'))
    t.after(() => rmSync(dir, { recursive: true, force: true }))
    writeFileSync(join(dir, 'api.d.ts'), types)
    writeFileSync(join(dir, 'use.ts'), [
      "import type { components, paths } from './api.js'",
      ...names.map((name, i) => `export type S${i} = components['schemas']['${name}']`),
      "export const body: paths['/api/messages/send-bulk']['post']['requestBody']['content']['application/json'] = { recipientIds: ['a'], content: 'hi' }",
      "export const error: components['schemas']['Error'] = { success: false, statusCode: 429, status: 429, code: 'QUOTA_EXHAUSTED', error: 'e', message: 'e' }",
      "export const limit: components['schemas']['ApiToken']['sendQuotaRemaining'] = 3"
    ].join('\n'))
    const program = ts.createProgram([join(dir, 'use.ts')], {
      strict: true, noEmit: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, types: []
    })
    const diagnostics = ts.getPreEmitDiagnostics(program).map(d => ts.flattenDiagnosticMessageText(d.messageText, '\n'))
    t.same(diagnostics, [], 'the generated types compile')
  })

  t.test('describes every response status', async t => {
    for (const { path, method, operation } of operations(doc)) {
      for (const [status, response] of Object.entries(operation.responses)) {
        t.not(response.description, 'Default Response', `${method} ${path} ${status}`)
      }
    }
  })

  t.test('declares the three token kinds and names the right ones per route', async t => {
    const schemes = doc.components.securitySchemes
    t.match(schemes.accessToken, { type: 'http', scheme: 'bearer' })
    t.match(schemes.apiToken, { type: 'http', scheme: 'bearer' })
    t.match(schemes.accessTokenCookie, { type: 'apiKey', in: 'cookie', name: 'access_token' })
    t.notOk(schemes.bearer, 'no generic scheme')
    for (const { path, method, operation } of operations(doc)) {
      for (const scheme of schemesOf(operation)) t.ok(schemes[scheme], `${method} ${path} uses a declared scheme (${scheme})`)
    }
    const op = (path: string, method: string) => schemesOf(doc.paths[path][method])
    for (const route of ['send-bulk', 'send-private', 'send-template']) t.same(op(`/api/messages/${route}`, 'post'), ['apiToken'])
    t.same(op('/api/messages/inbox', 'get'), ['accessToken', 'apiToken'])
    t.same(op('/websocket-token', 'get'), ['accessToken', 'accessTokenCookie'])
    t.same(op('/api/dashboard-token/generate', 'post'), ['clerkSession'])
    t.same(op('/ws', 'get'), ['accessToken', 'accessTokenCookie', 'wsTicket'])
    t.same(op('/api/webhooks/clerk', 'post'), [], 'the webhook is authenticated by its signature')
  })

  t.test('documents the admin requirement on every admin route', async t => {
    const admin = operations(doc).filter(({ path }) => path.startsWith('/api/admin/'))
    t.ok(admin.some(({ path }) => path === '/api/admin/users'), 'the user lookup is documented')
    for (const { path, method, operation } of admin) {
      t.match(operation.description, /administrators only/i, `${method} ${path}`)
      t.ok(operation.responses['403'], `${method} ${path} answers 403`)
    }
  })

  t.test('documents the Clerk webhook body and the /ws upgrade', async t => {
    const body = doc.paths['/api/webhooks/clerk'].post.requestBody?.content['application/json'].schema as { oneOf: Array<{ properties: { type: { enum: string[] } } }> }
    t.same(body.oneOf.map(event => event.properties.type.enum[0]), ['user.created', 'user.updated', 'user.deleted'])
    const ws = doc.paths['/ws'].get
    t.same(Object.keys(ws.responses).sort(), ['101', '401', '403', '426', '429', '503'])
    t.ok(ws.parameters?.some(p => p.in === 'query' && p.name === 'token'))
    t.match(ws.description, /asyncapi\.json/)
  })

  t.test('each documented route accepts exactly the token kinds it declares', async t => {
    const admin = await createUser(app, { role: 'admin' })
    const tokens: Record<string, string> = { accessToken: accessTokenFor(app, admin), apiToken: (await apiTokenFor(app, admin)).token }
    const checked = operations(doc).filter(({ operation }) => schemesOf(operation).some(scheme => scheme in tokens) && !schemesOf(operation).includes('wsTicket'))
    t.ok(checked.length >= 14, `every token route is checked (${checked.length})`)
    for (const { path, method, operation } of checked) {
      const url = path.replace(/\{[^}]+\}/g, randomUUID())
      for (const [scheme, token] of Object.entries(tokens)) {
        const res = await app.inject({
          method: method.toUpperCase() as 'GET',
          url,
          headers: { authorization: `Bearer ${token}`, ...(method === 'post' ? { 'content-type': 'application/json' } : {}) },
          ...(method === 'post' ? { payload: '{}' } : {})
        })
        const declared = schemesOf(operation).includes(scheme)
        t.equal(res.statusCode === 401, !declared, `${method} ${path} with an ${scheme}: ${declared ? 'accepted' : '401'} (got ${res.statusCode})`)
      }
    }
  })
})
