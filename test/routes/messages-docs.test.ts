import t from 'tap'
import { buildApp } from '../helpers/app.js'

t.test('the OpenAPI document describes the messaging and template routes with every status they answer', async t => {
  const app = await buildApp(t)
  const res = await app.inject({ method: 'GET', url: '/docs/json' })
  t.equal(res.statusCode, 200)
  const { paths } = res.json()
  const statuses = (path: string, method: string) => Object.keys(paths[path]?.[method]?.responses ?? {})
  const answers = (path: string, method: string, expected: string[]) =>
    t.same(expected.filter(s => !statuses(path, method).includes(s)), [], `${method} ${path} documents ${expected.join(', ')}`)
  for (const route of ['send-bulk', 'send-private', 'send-template']) {
    answers(`/api/messages/${route}`, 'post', ['200', '400', '401', '413', '415', '422', '429', '500', '503'])
    t.ok(paths[`/api/messages/${route}`].post.parameters.some((p: { name: string, in: string }) => p.in === 'header' && p.name === 'idempotency-key'))
  }
  answers('/api/messages/send-template', 'post', ['404'])
  answers('/api/messages/inbox', 'get', ['200', '400', '401', '503'])
  answers('/api/messages/ack', 'post', ['200', '400', '401', '503'])
  answers('/api/templates', 'post', ['201', '400', '401', '409', '413', '503'])
  answers('/api/templates', 'get', ['200', '401', '503'])
  answers('/api/templates/{id}', 'get', ['200', '400', '401', '404', '503'])
  answers('/api/templates/{id}', 'delete', ['200', '400', '401', '404', '503'])
})
