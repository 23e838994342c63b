/** An error that maps to one HTTP status and a stable machine-readable code. */
export class ApiError extends Error {
  constructor (
    public readonly statusCode: number,
    public readonly code: string,
    message: string,
    public readonly details?: Record<string, unknown>
  ) {
    super(message)
    this.name = 'ApiError'
  }
}

export const unauthorized = (message = 'Unauthorized: Missing or invalid token') => new ApiError(401, 'UNAUTHORIZED', message)
export const forbidden = (message = 'Forbidden') => new ApiError(403, 'FORBIDDEN', message)
export const notFound = (message = 'Not found') => new ApiError(404, 'NOT_FOUND', message)
export const badRequest = (message: string, details?: Record<string, unknown>) => new ApiError(400, 'BAD_REQUEST', message, details)
export const unprocessable = (code: string, message: string, details?: Record<string, unknown>) => new ApiError(422, code, message, details)

/** A dependency (database, PostgREST, Redis) did not answer in time or refused the connection. */
export class DependencyUnavailableError extends ApiError {
  constructor (dependency: string, cause?: unknown) {
    super(503, 'SERVICE_UNAVAILABLE', `${dependency} is unavailable, try again later`)
    this.name = 'DependencyUnavailableError'
    this.cause = cause
  }
}

/** The database schema is older than this code: an operator must migrate before the server starts. */
export class SchemaOutdatedError extends Error {
  constructor (found: string | null, expected: string) {
    super(`the database schema is out of date (${found === null ? 'no schema version' : `version ${found}`}, this gatehouse needs ${expected}): ` +
      'apply the migrations with `npm run cli -- migrate` (or `supabase db push`), then start again')
    this.name = 'SchemaOutdatedError'
  }
}
