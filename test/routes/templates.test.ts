import t from 'tap'
import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { accessTokenFor, apiTokenFor, buildApp, createUser } from '../helpers/app.js'
import { testBackends } from '../helpers/backends.js'
import type { User } from '../../schemas/users.js'

function call (app: FastifyInstance, token: string, method: 'GET' | 'POST' | 'DELETE', url: string, payload?: object) {
  return app.inject({ method, url: `/api/templates${url}`, headers: { authorization: `Bearer ${token}` }, ...(payload ? { payload } : {}) })
}

const member = (app: FastifyInstance, organizationId: string | null) => createUser(app, { organization_id: organizationId })

for (const backend of testBackends()) {
  t.test(`templates on the ${backend.name} store`, { skip: backend.skip }, async t => {
    const app = await buildApp(t, { driver: await backend.driver(t) })

    t.test('are shared within an organization and invisible outside it', async t => {
      const org = `org_${randomUUID()}`
      const author = await member(app, org)
      const colleague = await member(app, org)
      const outsider = await member(app, `org_${randomUUID()}`)
      const authorToken = (await apiTokenFor(app, author)).token
      const colleagueToken = accessTokenFor(app, colleague)
      const outsiderToken = (await apiTokenFor(app, outsider)).token

      const created = await call(app, authorToken, 'POST', '', { name: 'welcome', content: 'Hello {{name}}' })
      t.equal(created.statusCode, 201)
      const template = created.json().template
      t.match(created.json(), { success: true, template: { id: String, name: 'welcome', content: 'Hello {{name}}', organizationId: org, ownerId: author.id, createdAt: String } })
      await call(app, colleagueToken, 'POST', '', { name: 'second', content: 'Bye' })
      const taken = await call(app, colleagueToken, 'POST', '', { name: 'welcome', content: 'Another welcome' })
      t.equal(taken.statusCode, 409, 'a name is held once per organization')
      t.match(taken.json(), { success: false, statusCode: 409, status: 409, code: 'TEMPLATE_NAME_TAKEN', message: /welcome/ })
      t.equal((await call(app, outsiderToken, 'POST', '', { name: 'welcome', content: 'Theirs' })).statusCode, 201, 'another organization may use it')

      const list = await call(app, colleagueToken, 'GET', '')
      t.equal(list.statusCode, 200)
      t.same(list.json().templates.map((x: { name: string }) => x.name), ['welcome', 'second'], 'an access token works too')
      t.same((await call(app, outsiderToken, 'GET', '')).json().templates.map((x: { content: string }) => x.content), ['Theirs'])

      const got = await call(app, colleagueToken, 'GET', `/${template.id}`)
      t.equal(got.statusCode, 200)
      t.same(got.json(), { success: true, template })

      for (const method of ['GET', 'DELETE'] as const) {
        const res = await call(app, outsiderToken, method, `/${template.id}`)
        t.equal(res.statusCode, 404, `${method} from another organization is a 404`)
        t.match(res.json(), { success: false, statusCode: 404, code: 'TEMPLATE_NOT_FOUND' })
      }

      const deleted = await call(app, colleagueToken, 'DELETE', `/${template.id}`)
      t.equal(deleted.statusCode, 200)
      t.same(deleted.json(), { success: true, id: template.id })
      t.equal((await call(app, authorToken, 'GET', `/${template.id}`)).statusCode, 404)
      t.equal((await call(app, authorToken, 'DELETE', `/${template.id}`)).statusCode, 404, 'deleting twice is a 404')
    })

    t.test('belong to their author alone when the author has no organization', async t => {
      const loner = await member(app, null)
      const otherLoner = await member(app, null)
      const token = accessTokenFor(app, loner)
      const created = (await call(app, token, 'POST', '', { name: 'mine', content: 'x' })).json().template
      t.equal(created.organizationId, null)
      t.equal((await call(app, token, 'GET', `/${created.id}`)).statusCode, 200)
      t.equal((await call(app, accessTokenFor(app, otherLoner), 'GET', `/${created.id}`)).statusCode, 404)
      t.same((await call(app, accessTokenFor(app, otherLoner), 'GET', '')).json().templates, [])
    })
  })
}

t.test('bad input is refused and creates nothing', async t => {
  const app = await buildApp(t)
  const user: User = await member(app, `org_${randomUUID()}`)
  const token = accessTokenFor(app, user)

  for (const method of ['GET', 'DELETE'] as const) {
    const res = await call(app, token, method, '/not-a-uuid')
    t.equal(res.statusCode, 400, `${method} with a bad id`)
    t.match(res.json(), { success: false, statusCode: 400, code: 'VALIDATION_ERROR' })
  }
  t.equal((await call(app, token, 'GET', `/${randomUUID()}`)).statusCode, 404)

  for (const payload of [{ name: 'n' }, { content: 'c' }, { name: '', content: 'c' }, { name: 'n'.repeat(201), content: 'c' }, { name: 'n', content: '' }]) {
    const res = await call(app, token, 'POST', '', payload)
    t.equal(res.statusCode, 400, JSON.stringify(payload).slice(0, 60))
  }
  const tooBig = await call(app, token, 'POST', '', { name: 'big', content: 'é'.repeat(8193) })
  t.equal(tooBig.statusCode, 413)
  t.match(tooBig.json(), { success: false, code: 'CONTENT_TOO_LARGE', details: { maxContentBytes: 16384 } })
  t.same((await call(app, token, 'GET', '')).json().templates, [])

  // Both kinds are accepted here: the audience a token names picks the one kind it is verified as.
  const [header, payload, signature] = accessTokenFor(app, user).split('.')
  const relabelled = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), aud: 'gatehouse:api', jti: randomUUID() })).toString('base64url')
  t.equal((await app.inject({ method: 'GET', url: '/api/templates', headers: { authorization: `Bearer ${accessTokenFor(app, user)}` } })).statusCode, 200, 'an access token')
  for (const [name, authorization] of [
    ['no token', undefined],
    ['a ws ticket', `Bearer ${app.tokens.issueWsTicket(user.id).token}`],
    ['an access token relabelled as an API token', `Bearer ${header}.${relabelled}.${signature}`],
    ['not a token', 'Bearer abc.def.ghi']
  ] as const) {
    const res = await app.inject({ method: 'GET', url: '/api/templates', headers: authorization ? { authorization } : {} })
    t.equal(res.statusCode, 401, name)
    t.equal(res.json().error, 'Unauthorized: Missing or invalid token')
  }
})
