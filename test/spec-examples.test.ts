import t from 'tap'
import { accessTokenFor, apiTokenFor, buildApp, createUser } from './helpers/app.js'
import { clerkIssuer } from './helpers/clerk.js'

/*
 * The example requests of the three documents clients were written against,
 * sent as the documents write them (bodies byte for byte; only the <TOKEN>
 * placeholders are filled in), and the responses those clients read.
 */

const clerk = clerkIssuer()
const env = { CLERK_JWT_KEY: clerk.publicPem.replace(/\n/g, '\\n'), CLERK_AUTHORIZED_PARTIES: 'https://dashboard.example.com' }

t.test('admin-tokens-and-messaging: the send-template curl works as written', async t => {
  const app = await buildApp(t)
  const org = 'org_spec'
  const sender = await createUser(app, { organization_id: org })
  for (const id of ['contact456', 'contact789']) await createUser(app, { id, organization_id: org })
  const API_JWT_TOKEN = (await apiTokenFor(app, sender)).token
  // The document's template is named, not given by id.
  const template = await app.inject({
    method: 'POST', url: '/api/templates', headers: { authorization: `Bearer ${API_JWT_TOKEN}` }, payload: { name: 'template123', content: 'Hi {{name}}, see you at the {{event}}' }
  })
  t.equal(template.statusCode, 201)

  const res = await app.inject({
    method: 'POST',
    url: '/api/messages/send-template',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${API_JWT_TOKEN}` },
    payload: `{
    "templateId": "template123",
    "recipientIds": ["contact456", "contact789"],
    "placeholders": {
      "name": "John",
      "event": "Meeting"
    }
  }`
  })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { success: true, count: 2, messages: [{ recipientId: 'contact456' }, { recipientId: 'contact789' }] })

  const inbox = await app.inject({ method: 'GET', url: '/api/messages/inbox', headers: { authorization: `Bearer ${accessTokenFor(app, (await app.store.getUser('contact456'))!)}` } })
  t.match(inbox.json().messages, [{ senderId: sender.id, content: 'Hi John, see you at the Meeting', templateId: template.json().template.id }],
    'the recipient got the filled template, recorded by its id')

  const missing = await app.inject({
    method: 'POST', url: '/api/messages/send-template', headers: { 'Content-Type': 'application/json' }, payload: '{"templateId": "template123", "recipientIds": ["contact456"]}'
  })
  t.equal(missing.statusCode, 401)
  t.match(missing.json(), { success: false, error: 'Unauthorized: Missing or invalid token' }, 'the documented 401 response')
})

t.test('admin-tokens-and-messaging: token generation as written, and the error example with its status', async t => {
  const app = await buildApp(t)
  const admin = await createUser(app, { role: 'admin', name: 'Admin User' })
  const user = await createUser(app, { id: '654...', name: 'Dev User' })
  const ADMIN_JWT_TOKEN = accessTokenFor(app, admin)
  const post = (payload: string) => app.inject({
    method: 'POST', url: '/api/admin/tokens', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${ADMIN_JWT_TOKEN}` }, payload
  })

  // The curl example's expiration is a date that has passed: refused, clearly, and nothing is created.
  const written = await post(`{
    "userId": "654...",
    "expiration": "2024-12-31T23:59:59.000Z"
  }`)
  t.equal(written.statusCode, 400)
  t.match(written.json(), { success: false, statusCode: 400, status: 400, message: /future/ })

  // The front-end snippet's body with no expiration: a token that does not expire.
  const snippet = await post(JSON.stringify({ userId: user.id, expiration: null }))
  t.equal(snippet.statusCode, 201)
  const body = snippet.json()
  t.match(body, { success: true, token: String, name: 'Dev User' })
  const claims = app.tokens.verify('api', body.token)
  t.equal(claims.sub, user.id, 'the token is for the user asked for')
  t.notOk('exp' in claims, 'and never expires')

  const error = await post('{}')
  t.equal(error.statusCode, 400)
  t.match(error.json(), { message: 'User ID is required', status: 400 }, 'the documented error response')
  t.equal(error.json().statusCode, error.json().status)
})

t.test('websocket-token: the curl with the cookie, as written', async t => {
  const app = await buildApp(t)
  const user = await createUser(app)
  const YOUR_ACCESS_TOKEN = accessTokenFor(app, user)
  const res = await app.inject({
    method: 'GET', url: '/websocket-token/', headers: { Cookie: `access_token=${YOUR_ACCESS_TOKEN}`, 'Content-Type': 'application/json' }
  })
  t.equal(res.statusCode, 200)
  t.equal(app.tokens.verify('ws', res.json().token).sub, user.id, 'a ticket for the cookie\'s user')

  const anonymous = await app.inject({ method: 'GET', url: '/websocket-token/', headers: { 'Content-Type': 'application/json' } })
  t.equal(anonymous.statusCode, 401)
  t.match(anonymous.json(), { success: false, statusCode: 401, status: 401 })
})

t.test('dashboard-token: the Clerk exchange, and the error responses the dashboard reads', async t => {
  const app = await buildApp(t, { env })
  await createUser(app, { clerk_id: 'user_clerk_1', plan_type: 'pro', credits: 3 })
  const res = await app.inject({ method: 'POST', url: '/api/dashboard-token/generate', headers: { Authorization: `Bearer ${clerk.sessionToken()}` } })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { success: true, access_token: String, expires_in: 86400, expires_at: String, token_type: 'Bearer' })
  t.match(app.tokens.verify('access', res.json().access_token), { clerk_id: 'user_clerk_1', plan_type: 'pro', credits: 3 })

  const noHeader = await app.inject({ method: 'POST', url: '/api/dashboard-token/generate' })
  t.equal(noHeader.statusCode, 401)
  t.match(noHeader.json(), { error: String, status: 401 })
  const unknown = await app.inject({ method: 'POST', url: '/api/dashboard-token/generate', headers: { Authorization: `Bearer ${clerk.sessionToken({ sub: 'user_nobody' })}` } })
  t.equal(unknown.statusCode, 404)
  t.match(unknown.json(), { error: 'User not found in database', status: 404 })
})
