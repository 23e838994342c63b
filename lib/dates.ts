// Date.parse accepts loose forms ("1", "March 7"); expirations must be ISO-8601.
const ISO_8601 = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/

/** The date an ISO-8601 string names, or null when it is not one. */
export function parseIsoDate (value: string): Date | null {
  const time = ISO_8601.test(value) ? Date.parse(value) : NaN
  return Number.isNaN(time) ? null : new Date(time)
}
