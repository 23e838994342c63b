import t from 'tap'
import { loggerOptions } from '../../lib/logger.js'
import { buildApp, createUser, freshEmbedded } from '../helpers/app.js'
import { eventually } from '../helpers/processes.js'

t.test('the service prunes by itself every PRUNE_INTERVAL_MS, and logs what went', async t => {
  const driver = await freshEmbedded()
  const lines: string[] = []
  const app = await buildApp(t, {
    driver,
    env: { PRUNE_INTERVAL_MS: '200', ACKED_MESSAGE_TTL: '3600' },
    server: { logger: { ...(loggerOptions('info') as object), stream: { write: (line: string) => { lines.push(line) } } } }
  })
  const [sender, reader] = [await createUser(app), await createUser(app)]
  const outcome = await app.store.send({
    senderId: sender.id,
    senderOrganizationId: sender.organizationId,
    senderIsAdmin: false,
    recipientIds: [reader.id],
    content: 'read long ago',
    templateId: null,
    idempotencyKey: null,
    requestHash: null
  })
  if (!outcome.ok) throw new Error(outcome.error)
  const [{ id }] = outcome.result.messages
  t.equal(await app.store.ack(reader.id, [id]), 1)
  await driver.sql.query("update messages set acked_at = now() - interval '2 hours' where body_id = $1 and recipient_id = $2", [id, reader.id])

  await eventually('the acknowledged message pruned', async () => (await app.store.inbox(reader.id, null, 10)).length === 0, 30_000)
  await eventually('the run logged', async () => lines.some(line => line.includes('pruned expired data')), 30_000)
  t.match(JSON.parse(lines.find(line => line.includes('pruned expired data'))!), { deleted: { acked: 1, bodies: 1 } })
})
