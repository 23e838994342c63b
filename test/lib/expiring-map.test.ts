import t from 'tap'
import { ExpiringMap } from '../../lib/expiring-map.js'

// What the authentication caches rely on: nothing is served at or past its deadline,
// and a full map makes room by dropping the entry set longest ago.

t.test('an entry is served until its deadline and never at or after it', async t => {
  const map = new ExpiringMap<string, string>(10)
  map.set('a', 'alpha', 1_000)
  t.equal(map.get('a', 999), 'alpha')
  t.equal(map.get('a', 1_000), undefined, 'lapsed at its deadline')
  t.equal(map.size, 0, 'and dropped')
  t.equal(map.get('a', 0), undefined, 'a lapsed entry does not come back')
})

t.test('when full, the entry set longest ago goes first; setting a key again makes it the newest', async t => {
  const map = new ExpiringMap<string, number>(3)
  map.set('a', 1, Infinity)
  map.set('b', 2, Infinity)
  map.set('c', 3, Infinity)
  map.set('a', 10, Infinity)
  map.set('d', 4, Infinity)
  t.equal(map.size, 3)
  t.equal(map.get('b'), undefined, 'the oldest went')
  t.same(['a', 'c', 'd'].map(key => map.get(key)), [10, 3, 4])
})

t.test('delete, deleteWhere and clear forget entries at once', async t => {
  const map = new ExpiringMap<string, { owner: string }>(10)
  map.set('t1', { owner: 'u1' }, Infinity)
  map.set('t2', { owner: 'u2' }, Infinity)
  map.set('t3', { owner: 'u1' }, Infinity)
  map.deleteWhere(value => value.owner === 'u1')
  t.same([map.get('t1'), map.get('t2'), map.get('t3')], [undefined, { owner: 'u2' }, undefined])
  map.delete('t2')
  t.equal(map.get('t2'), undefined)
  map.set('t4', { owner: 'u3' }, Infinity)
  map.clear()
  t.equal(map.size, 0)
})
