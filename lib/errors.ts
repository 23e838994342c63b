import type { FastifyError } from 'fastify'
import { NO_NUL, type ErrorBody } from '../schemas/common.js'

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

/** Maps any error to the one envelope; status and code come from the error when it is a client error. */
export function toErrorBody (error: FastifyError | ApiError | Error): ErrorBody {
  const err = error as FastifyError & Partial<ApiError>
  let statusCode = typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500
  let code = err instanceof ApiError ? err.code : 'INTERNAL_ERROR'
  let message = err.message
  const details = err instanceof ApiError ? err.details : undefined

  if (err.validation) {
    statusCode = 400
    code = 'VALIDATION_ERROR'
    message = err.message
    const first = err.validation[0]
    if (first?.keyword === 'pattern' && first.params?.pattern === NO_NUL) {
      message = `${err.validationContext ?? 'body'}${first.instancePath} must not contain NUL (U+0000) characters`
    }
  } else if (!(err instanceof ApiError) && statusCode < 500) {
    code = {
      FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
      FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
      FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
      FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
      FST_ERR_BAD_URL: 'BAD_URL',
      FST_ERR_MAX_PARAM_LENGTH: 'URI_TOO_LONG'
    }[err.code ?? ''] ?? (err.code?.startsWith('FST_') ? 'BAD_REQUEST' : err.code ?? 'BAD_REQUEST')
    if (err.name === 'SyntaxError') code = 'INVALID_JSON'
  }
  if (statusCode >= 500 && !(err instanceof ApiError)) message = 'Internal server error'
  return { success: false, statusCode, status: statusCode, code, error: message, message, ...(details ? { details } : {}) }
}
