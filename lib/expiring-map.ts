/**
 * A map whose entries lapse at a time given with each, holding at most
 * `maxEntries`: when full, the entry set longest ago goes first (a Map iterates
 * in insertion order). For caches that must never serve past a deadline.
 */
export class ExpiringMap<K, V> {
  private readonly entries = new Map<K, { value: V, until: number }>()

  constructor (private readonly maxEntries: number) {}

  get size (): number { return this.entries.size }

  /** The value, unless absent or lapsed (a lapsed entry is dropped). */
  get (key: K, now = Date.now()): V | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined) return undefined
    if (entry.until > now) return entry.value
    this.entries.delete(key)
    return undefined
  }

  /** Keeps `value` until `until` (milliseconds since the epoch), as the newest entry. */
  set (key: K, value: V, until: number): void {
    this.entries.delete(key)
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value as K)
    this.entries.set(key, { value, until })
  }

  delete (key: K): void {
    this.entries.delete(key)
  }

  /** Drops every entry whose value `matches`. */
  deleteWhere (matches: (value: V) => boolean): void {
    for (const [key, entry] of this.entries) if (matches(entry.value)) this.entries.delete(key)
  }

  clear (): void {
    this.entries.clear()
  }
}
