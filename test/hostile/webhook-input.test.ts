import t from 'tap'
import { randomUUID } from 'node:crypto'
import { buildApp } from '../helpers/app.js'
import { signedClerkDelivery, webhookSecret } from '../helpers/clerk.js'

const SECRET = webhookSecret()

/** A correctly signed Clerk delivery: the signature is no excuse for bad data. */
const delivery = (body: unknown) => signedClerkDelivery(SECRET, body)

const user = (clerkId: string, data: Record<string, unknown>) => ({
  type: 'user.created',
  data: { id: clerkId, first_name: 'Ada', email_addresses: [{ id: 'e1', email_address: 'ada@example.com' }], primary_email_address_id: 'e1', ...data }
})

t.test('NUL in a Clerk user is a 400 naming the field, and no user is stored', async t => {
  const app = await buildApp(t, { env: { CLERK_WEBHOOK_SECRET: SECRET } })
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ first_name: 'A\u0000da' }, /first_name/],
    [{ username: '\u0000' }, /username/],
    [{ email_addresses: [{ id: 'e1', email_address: 'a\u0000@example.com' }] }, /email_address/]
  ]
  for (const [data, field] of cases) {
    const clerkId = `user_${randomUUID()}`
    const res = await app.inject(delivery(user(clerkId, data)))
    t.equal(res.statusCode, 400, JSON.stringify(data))
    t.match(res.json(), { success: false, statusCode: 400 })
    t.match(JSON.stringify(res.json().details), field, 'the field is named')
    t.equal(await app.store.getUserByClerkId(clerkId), null, 'nothing stored')
  }

  // Metadata is free-form; what Postgres cannot hold is still the sender's fault, not a 500.
  const clerkId = `user_${randomUUID()}`
  const res = await app.inject(delivery(user(clerkId, { public_metadata: { organization_id: 'org\u0000' } })))
  t.equal(res.statusCode, 400)
  t.match(res.json(), { success: false, code: 'INVALID_VALUE' })
  t.equal(await app.store.getUserByClerkId(clerkId), null, 'nothing stored')
})
