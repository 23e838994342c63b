import t from 'tap'
import { randomBytes } from 'node:crypto'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { Webhook } from 'svix'
import type { SqlAccess } from '../../plugins/app/supabase/driver.js'
import { accessTokenFor, apiTokenFor, buildApp, createUser } from '../helpers/app.js'
import { testBackends } from '../helpers/backends.js'
import { clerkIssuer } from '../helpers/clerk.js'

/**
 * Property-style: deterministic junk (wrong types, sizes, unicode, NUL, depth) at
 * every route of the OpenAPI document, with valid credentials so it reaches the
 * handlers. Whatever comes in, the answer is never a 5xx, and a refused request
 * leaves the store as it was. The seed is printed on failure to replay a case.
 */

const SEED = Number(process.env.JUNK_SEED ?? 20261122)
const ROUNDS = Number(process.env.JUNK_ROUNDS ?? 30)
const WEBHOOK_SECRET = `whsec_${randomBytes(24).toString('base64')}`
const TABLES = ['users', 'api_tokens', 'templates', 'message_bodies', 'messages', 'idempotency_keys']

/** mulberry32: small, seeded, good enough to pick junk. */
function prng (seed: number) {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6D2B79F5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
  const int = (n: number) => Math.floor(next() * n)
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]
  return { next, int, pick }
}
type Rng = ReturnType<typeof prng>

const STRINGS = [
  '', ' ', 'a', '\u0000', 'a\u0000b', '\ud800', '\udfff\ud800', '😀'.repeat(50), '\u202e\u200b\ufeff', '%00', '%E0%A4%A',
  '{{x}}', '{{ a.b }}', "'; drop table users; --", '__proto__', 'constructor', '0', '-1', '1e309', 'NaN', 'null', 'true',
  '2026-13-45T25:61:61Z', '1970-01-01T00:00:00Z', '9999-12-31T23:59:59Z', 'x'.repeat(300), 'ü'.repeat(20_000), '\r\n\t\u0007',
  '00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff'
]

function junkString (rng: Rng): string {
  let s = ''
  if (rng.int(4) > 0) {
    s = rng.pick(STRINGS)
  } else {
    const length = rng.pick([1, 8, 64, 1000])
    for (let i = 0; i < length; i++) s += String.fromCharCode(rng.int(0x10000))
  }
  // NUL somewhere inside, often: Postgres refuses it in text and jsonb.
  if (rng.int(3) === 0) {
    const at = rng.int(s.length + 1)
    s = s.slice(0, at) + '\u0000' + s.slice(at)
  }
  return s
}

function junk (rng: Rng, depth = 0): unknown {
  switch (rng.int(depth > 3 ? 6 : 9)) {
    case 0: return null
    case 1: return rng.pick([true, false])
    case 2: return rng.pick([0, -1, 1.5, 2 ** 31, 2 ** 53 + 1, -(2 ** 63), 1e308, Number.MIN_VALUE])
    case 3: case 4: case 5: return junkString(rng)
    case 6: return Array.from({ length: rng.int(4) }, () => junk(rng, depth + 1))
    case 7: return Object.fromEntries(Array.from({ length: rng.int(4) }, () => [junkString(rng), junk(rng, depth + 1)]))
    default: return rng.pick<unknown>([[[[[[[[[[[]]]]]]]]]], Array(2000).fill('a'), JSON.parse('{"__proto__":{"admin":true}}'), { constructor: { prototype: 1 } }])
  }
}

/** Percent-encodes every byte (lone surrogates become U+FFFD, as on the wire). */
const enc = (s: string) => Buffer.from(s, 'utf8').toString('hex').replace(/../g, '%$&')

/** A deeply nested JSON text, which JSON.stringify of a built value could not produce cheaply. */
const deepJson = (levels: number) => '['.repeat(levels) + ']'.repeat(levels)

interface Operation { method: string, path: string, body?: { properties?: Record<string, unknown> } }

function operations (app: FastifyInstance): Operation[] {
  const doc = app.swagger() as { paths: Record<string, Record<string, { requestBody?: { content?: Record<string, { schema?: Operation['body'] }> } }>> }
  const ops: Operation[] = [{ method: 'GET', path: '/ws' }]
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      ops.push({ method: method.toUpperCase(), path, body: op.requestBody?.content?.['application/json']?.schema })
    }
  }
  return ops
}

/** A plausible body with one or more fields replaced by junk, or junk outright. */
function body (rng: Rng, op: Operation, valid: Record<string, unknown>): { payload: string, type: string } {
  switch (rng.int(6)) {
    case 0: return { payload: JSON.stringify(junk(rng)) ?? 'null', type: 'application/json' }
    case 1: return { payload: rng.pick(['{', '', '{"a":1}{', deepJson(20_000), `{"x":${deepJson(50_000)}}`, '\u0000', '[]', 'null']), type: 'application/json' }
    case 2: return { payload: junkString(rng), type: rng.pick(['text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=latin1', 'multipart/form-data']) }
    default: {
      const out: Record<string, unknown> = { ...valid }
      const fields = Object.keys(op.body?.properties ?? {})
      for (let i = 0; i <= rng.int(2); i++) {
        const field = fields.length > 0 ? rng.pick(fields) : junkString(rng)
        out[field] = junk(rng)
      }
      if (rng.int(4) === 0) out[junkString(rng)] = junk(rng)
      return { payload: JSON.stringify(out), type: 'application/json' }
    }
  }
}

async function counts (sql: SqlAccess): Promise<string> {
  const rows = await sql.query<{ t: string, n: string }>(TABLES.map(t => `select '${t}' as t, count(*)::text as n from ${t}`).join(' union all '))
  return rows.map(r => `${r.t}=${r.n}`).join(' ')
}

t.test(`junk at every route never gives a 5xx and refused requests change nothing (seed ${SEED})`, async t => {
  const clerk = clerkIssuer()
  const { driver, sql } = await testBackends()[0].open(t)
  const app = await buildApp(t, {
    driver,
    env: {
      CLERK_JWT_KEY: clerk.publicPem.replace(/\n/g, '\\n'),
      CLERK_AUTHORIZED_PARTIES: 'https://dashboard.example.com',
      CLERK_WEBHOOK_SECRET: WEBHOOK_SECRET
    }
  })
  const admin = await createUser(app, { role: 'admin', organization_id: 'org_junk', clerk_id: 'user_clerk_1' })
  const sender = await createUser(app, { organization_id: 'org_junk' })
  const recipient = await createUser(app, { organization_id: 'org_junk' })
  const template = await app.store.createTemplate({ organizationId: 'org_junk', ownerId: sender.id }, { name: 't', content: 'Hi {{name}}' })
  if (!template) throw new Error('the template name is taken')
  const tokens = {
    admin: accessTokenFor(app, admin),
    api: (await apiTokenFor(app, sender)).token,
    access: accessTokenFor(app, recipient),
    clerk: clerk.sessionToken()
  }
  const valid: Record<string, Record<string, unknown>> = {
    '/api/admin/tokens': { userId: recipient.id, name: 'n' },
    '/api/messages/send-template': { templateId: template.id, recipientIds: [recipient.id], placeholders: { name: 'x' } },
    '/api/messages/send-bulk': { recipientIds: [recipient.id], content: 'hi' },
    '/api/messages/send-private': { recipientId: recipient.id, content: 'hi' },
    '/api/messages/ack': { ids: ['00000000-0000-4000-8000-000000000000'] },
    '/api/templates': { name: 'n', content: 'c' },
    '/api/webhooks/clerk': { type: 'user.updated', data: { id: 'user_clerk_1', first_name: 'Ada' } }
  }

  const credentialFor = (path: string) =>
    path.startsWith('/api/admin')
      ? tokens.admin
      : path.startsWith('/api/dashboard-token')
        ? tokens.clerk
        : /inbox|ack|websocket-token|\/ws/.test(path)
          ? tokens.access
          : tokens.api

  const rng = prng(SEED)
  const ops = operations(app)
  t.ok(ops.length >= 15, `${ops.length} operations found in the OpenAPI document`)
  let before = await counts(sql)
  let requests = 0
  const failures: string[] = []

  for (let round = 0; round < ROUNDS; round++) {
    for (const op of ops) {
      const path = op.path.replace(/\{[^}]+\}/g, () => rng.int(3) === 0
        ? template.id
        : rng.pick([enc(junkString(rng)).slice(0, 400), '%ZZ', '%00', '..%2F..%2Fetc', 'x'.repeat(150)]))
      const query = rng.int(2) === 0
        ? ''
        : '?' + Array.from({ length: 1 + rng.int(3) }, () =>
        `${enc(rng.pick(['after', 'limit', 'userId', 'token', junkString(rng).slice(0, 20)]))}=${rng.int(4) === 0 ? '%E0%A4%A' : enc(junkString(rng).slice(0, 100))}`).join('&')
      // Mostly the credential the route takes, so the junk reaches its handler; sometimes another kind.
      const token = rng.int(5) === 0 ? rng.pick(Object.values(tokens)) : credentialFor(op.path)
      const headers: Record<string, string> = { authorization: `Bearer ${token}` }
      if (rng.int(3) === 0) headers['idempotency-key'] = rng.pick(['k', 'x'.repeat(300), ' ', `key-${rng.int(5)}`])
      const request: InjectOptions = { method: op.method as 'GET', url: path + query, headers }
      if (op.method === 'POST') {
        const { payload, type } = body(rng, op, valid[op.path] ?? {})
        request.payload = payload
        headers['content-type'] = type
        if (op.path === '/api/webhooks/clerk' && rng.int(2) === 0) {
          const id = `msg_${rng.int(1e9)}`
          const at = new Date()
          Object.assign(headers, { 'svix-id': id, 'svix-timestamp': String(Math.floor(at.getTime() / 1000)), 'svix-signature': new Webhook(WEBHOOK_SECRET).sign(id, at, payload) })
        }
      }
      const res = await app.inject(request)
      requests++
      const what = `${op.method} ${(path + query).slice(0, 120)} ${String(request.payload ?? '').slice(0, 120)}`
      if (res.statusCode >= 500) failures.push(`${res.statusCode} ${what}: ${res.body.slice(0, 200)}`)
      if (res.statusCode >= 400) {
        if (!/^application\/json/.test(String(res.headers['content-type']))) failures.push(`not JSON: ${res.statusCode} ${what}`)
        else if (res.json().success !== false || res.json().statusCode !== res.statusCode) failures.push(`not the envelope: ${res.statusCode} ${what}`)
        const after = await counts(sql)
        if (after !== before) failures.push(`refused with ${res.statusCode} yet changed the store (${before} -> ${after}): ${what}`)
      } else {
        before = await counts(sql)
      }
    }
  }
  t.ok(requests >= ROUNDS * 15, `${requests} requests sent`)
  t.same(failures, [], 'no 5xx, every refusal in the envelope, no refused request changed the store')
})
