import t from 'tap'
import { buildApp } from './helpers/app.js'

t.test('unknown routes answer 404 in the error envelope', async t => {
  const app = await buildApp(t)
  const res = await app.inject({ method: 'GET', url: '/nope' })
  t.equal(res.statusCode, 404)
  t.match(res.json(), { success: false, statusCode: 404, code: 'NOT_FOUND', error: String, message: String })
})

t.test('a second app in the same process starts from the migrated dump', async t => {
  const app = await buildApp(t)
  const res = await app.inject({ method: 'GET', url: '/nope?token=abc' })
  t.equal(res.statusCode, 404)
})
