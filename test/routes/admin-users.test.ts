import { randomUUID } from 'node:crypto'
import t from 'tap'
import { accessTokenFor, apiTokenFor, buildApp, createUser } from '../helpers/app.js'
import { testBackends } from '../helpers/backends.js'
import { signedClerkDelivery, webhookSecret } from '../helpers/clerk.js'

const url = '/api/admin/users'
const SECRET = webhookSecret()

/** A `user.created` delivery as Clerk sends it, signed as svix does. */
function clerkUserCreated (clerkId: string, email: string) {
  return signedClerkDelivery(SECRET, {
    object: 'event',
    type: 'user.created',
    timestamp: Date.now(),
    data: {
      id: clerkId,
      object: 'user',
      first_name: 'Grace',
      last_name: 'Hopper',
      primary_email_address_id: 'idn_1',
      email_addresses: [{ id: 'idn_1', object: 'email_address', email_address: email }],
      public_metadata: {},
      created_at: Date.now(),
      updated_at: Date.now()
    }
  })
}

for (const backend of testBackends()) {
  t.test(backend.name, { skip: backend.skip }, async t => {
    const app = await buildApp(t, { driver: await backend.driver(t), env: { CLERK_WEBHOOK_SECRET: SECRET } })
    const admin = await createUser(app, { role: 'admin' })
    const adminApi = await apiTokenFor(app, admin)
    const auth = { authorization: `Bearer ${adminApi.token}` }

    t.test('a user created by the Clerk webhook is found by clerk id and by e-mail, and a send reaches the id found', async t => {
      const clerkId = `user_${randomUUID()}`
      const email = `grace.${randomUUID()}@example.com`
      t.equal((await app.inject(clerkUserCreated(clerkId, email))).statusCode, 200)

      const byClerk = await app.inject({ method: 'GET', url, query: { clerkId }, headers: auth })
      t.equal(byClerk.statusCode, 200)
      const [found, ...rest] = byClerk.json().users
      t.same(rest, [])
      t.match(found, { id: String, clerkId, email, name: 'Grace Hopper', role: 'user' })
      t.not(found.id, clerkId, 'the webhook generated an id of its own')

      const byEmail = await app.inject({ method: 'GET', url, query: { email: email.toUpperCase() }, headers: auth })
      t.equal(byEmail.statusCode, 200)
      t.same(byEmail.json().users.map((u: { id: string }) => u.id), [found.id], 'e-mail matches case-insensitively')

      const sent = await app.inject({
        method: 'POST', url: '/api/messages/send-private', headers: auth, payload: { recipientId: found.id, content: 'welcome' }
      })
      t.equal(sent.statusCode, 200)
      t.match(sent.json(), { success: true, count: 1, messages: [{ recipientId: found.id }] })
      const inbox = await app.inject({ method: 'GET', url: '/api/messages/inbox', headers: { authorization: `Bearer ${accessTokenFor(app, found)}` } })
      t.match(inbox.json().messages, [{ content: 'welcome', senderId: admin.id }])
    })

    t.test('both criteria must match; no match is an empty list', async t => {
      const user = await createUser(app, { clerk_id: `user_${randomUUID()}` })
      const both = await app.inject({ method: 'GET', url, query: { clerkId: user.clerkId!, email: user.email! }, headers: auth })
      t.same(both.json().users.map((u: { id: string }) => u.id), [user.id])
      const mismatch = await app.inject({ method: 'GET', url, query: { clerkId: user.clerkId!, email: 'someone.else@example.com' }, headers: auth })
      t.same(mismatch.json(), { success: true, users: [] })
    })

    t.test('an access token of an admin works too', async t => {
      const res = await app.inject({ method: 'GET', url, query: { email: admin.email! }, headers: { authorization: `Bearer ${accessTokenFor(app, admin)}` } })
      t.equal(res.statusCode, 200)
      t.same(res.json().users.map((u: { id: string }) => u.id), [admin.id])
    })

    t.test('no criterion, an unknown parameter or an empty value is a 400 in the envelope', async t => {
      const queries: Array<Record<string, string>> = [{}, { userId: admin.id }, { email: '' }]
      for (const query of queries) {
        const res = await app.inject({ method: 'GET', url, query, headers: auth })
        t.equal(res.statusCode, 400, JSON.stringify(query))
        t.match(res.json(), { success: false, statusCode: 400, code: String, message: String })
      }
    })

    t.test('non-admins and missing tokens learn nothing', async t => {
      const user = await createUser(app)
      const asUser = await app.inject({ method: 'GET', url, query: { email: admin.email! }, headers: { authorization: `Bearer ${accessTokenFor(app, user)}` } })
      t.equal(asUser.statusCode, 403)
      t.notOk(asUser.body.includes(admin.id))
      const anonymous = await app.inject({ method: 'GET', url, query: { email: admin.email! } })
      t.equal(anonymous.statusCode, 401)
    })
  })
}
