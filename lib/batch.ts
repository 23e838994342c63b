import DataLoader from 'dataloader'

/**
 * A loader whose lookups go to the store many at a time: while one call is out,
 * the lookups that arrive wait and go together in the next (as the ack writer
 * does). In a connect storm upgrades arrive one per turn of the event loop, so
 * batching by turn alone would still cost a round trip each. It caches nothing
 * (the authentication cache decides what may be remembered); a failed call fails
 * every lookup it carried.
 */
export function batchLoader<K, V> (load: (keys: readonly K[]) => Promise<V[]>, maxBatchSize = 500): DataLoader<K, V> {
  let busy: Promise<unknown> = Promise.resolve()
  return new DataLoader<K, V>(keys => (busy = load(keys)), {
    cache: false,
    maxBatchSize,
    batchScheduleFn: dispatch => {
      const go = () => setImmediate(dispatch)
      busy.then(go, go)
    }
  })
}
