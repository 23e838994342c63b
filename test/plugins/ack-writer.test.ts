import t from 'tap'
import pino from 'pino'
import { AckWriter } from '../../plugins/app/websocket/acks.js'

type Ack = { recipientId: string, id: string }

t.test('acks arriving together are written in one statement; later ones wait for the write in flight', async t => {
  const calls: Ack[][] = []
  let release!: () => void
  const writer = new AckWriter({
    async ackMany (acks) {
      calls.push(acks)
      if (calls.length === 1) await new Promise<void>(resolve => { release = resolve })
      return acks.length
    }
  }, pino({ level: 'silent' }))

  const first = [writer.ack('ann', ['1', '2']), writer.ack('ben', ['3'])]
  await new Promise(resolve => setImmediate(resolve))
  const second = [writer.ack('cay', ['4']), writer.ack('ann', ['5'])]
  await new Promise(resolve => setImmediate(resolve))
  t.equal(calls.length, 1, 'one write while the first is in flight')
  release()
  await Promise.all([...first, ...second])
  t.same(calls, [
    [{ recipientId: 'ann', id: '1' }, { recipientId: 'ann', id: '2' }, { recipientId: 'ben', id: '3' }],
    [{ recipientId: 'cay', id: '4' }, { recipientId: 'ann', id: '5' }]
  ])
})

t.test('a batch never exceeds the cap', async t => {
  const sizes: number[] = []
  const writer = new AckWriter({ async ackMany (acks) { sizes.push(acks.length); return acks.length } }, pino({ level: 'silent' }), 3)
  await Promise.all([writer.ack('a', ['1', '2']), writer.ack('b', ['3', '4']), writer.ack('c', ['5'])])
  t.same(sizes, [2, 3])
})

t.test('a failed write is logged, its callers go on, and the next write still happens', async t => {
  const logged: string[] = []
  const log = pino({ level: 'warn' }, { write: (line: string) => { logged.push(line) } })
  let fail = true
  const written: Ack[][] = []
  const writer = new AckWriter({
    async ackMany (acks) {
      if (fail) { fail = false; throw new Error('store down') }
      written.push(acks)
      return acks.length
    }
  }, log)
  await writer.ack('ann', ['1'])
  t.match(logged.join(''), /acks not stored/)
  await writer.ack('ann', ['2'])
  t.same(written, [[{ recipientId: 'ann', id: '2' }]])
})

t.test('acks wait while a large send stores its later chunks, then are written; a failed send holds them no longer', async t => {
  const calls: Ack[][] = []
  const writer = new AckWriter({ async ackMany (acks) { calls.push(acks); return acks.length } }, pino({ level: 'silent' }))
  let finish!: () => void
  writer.deferDuring(new Promise<void>(resolve => { finish = resolve }))
  let written = false
  const acked = writer.ack('ann', ['1']).then(() => { written = true })
  for (let i = 0; i < 5; i++) await new Promise(resolve => setImmediate(resolve))
  t.same(calls, [], 'nothing written while the send stores')
  t.notOk(written)
  finish()
  await acked
  t.same(calls, [[{ recipientId: 'ann', id: '1' }]])

  let fail!: (error: Error) => void
  writer.deferDuring(new Promise<void>((_resolve, reject) => { fail = reject }))
  const next = writer.ack('ben', ['2'])
  fail(new Error('store down'))
  await next
  t.same(calls.at(-1), [{ recipientId: 'ben', id: '2' }])
})
