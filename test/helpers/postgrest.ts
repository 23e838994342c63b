import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createSigner, createVerifier } from 'fast-jwt'
import type { SqlAccess } from '../../plugins/app/supabase/driver.js'

/**
 * A small PostgREST stand-in for tests: it serves `POST /rest/v1/rpc/:fn` the way
 * Supabase's gateway and PostgREST do for supabase-js `rpc()`, executing the call
 * on a real database (Postgres, or PGlite when no server is available).
 *
 * Like PostgREST, it verifies the bearer JWT with the project's JWT secret and runs
 * each call in a transaction under the token's `role` claim (`set local role`), so a
 * call has exactly the privileges it has on Supabase; it finds the function by name
 * and argument names, converts the JSON body to the parameter types with
 * `json_to_record`, answers the function's result as JSON (`null` for SQL NULL), and
 * maps SQLSTATEs to HTTP statuses.
 *
 * The database must have Supabase's roles: see `prepareSupabaseRoles`.
 */
export interface PostgrestFixture {
  /** The project URL to give createClient(). */
  url: string
  close (): Promise<void>
}

interface PostgrestError { code: string, message: string, details: string | null, hint: string | null }

/** The test project's JWT secret: Supabase signs its anon and service_role keys with it. */
export const POSTGREST_JWT_SECRET = 'test-postgrest-jwt-secret-test-postgrest-jwt-secret'

/** An API key as Supabase issues them: an HS256 JWT naming the database role. */
export function supabaseKey (role: 'anon' | 'authenticated' | 'service_role', secret = POSTGREST_JWT_SECRET): string {
  return createSigner({ key: secret, algorithm: 'HS256' })({ role, iss: 'supabase' })
}

const ROLE = /^[a-z_][a-z0-9_]*$/

/**
 * What a Supabase project has before our migrations run: the API roles (cluster-wide
 * on Postgres, so created idempotently; granted to the connecting user so it may
 * `set role`), and Supabase's default privileges, which grant every new table,
 * sequence and function in `public` to them. Migrations must take those back.
 */
export async function prepareSupabaseRoles (sql: SqlAccess): Promise<void> {
  await sql.exec(`
    do $$
    declare r text;
    begin
      foreach r in array array['anon', 'authenticated', 'service_role'] loop
        begin
          if not exists (select 1 from pg_roles where rolname = r) then
            execute format('create role %I nologin%s', r, case when r = 'service_role' then ' bypassrls' else '' end);
          end if;
        exception when duplicate_object or unique_violation then null; -- another test created it meanwhile
        end;
        begin
          execute format('grant %I to current_user', r);
        exception when others then null; -- already a member, or granted concurrently
        end;
      end loop;
    end $$;
    alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
    alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
    alter default privileges in schema public grant all on functions to anon, authenticated, service_role;`)
}

export async function startPostgrest (sql: SqlAccess, { jwtSecret = POSTGREST_JWT_SECRET }: { jwtSecret?: string } = {}): Promise<PostgrestFixture> {
  const verify = createVerifier({ key: jwtSecret, algorithms: ['HS256'] })
  const signatures = new Map<string, Array<{ name: string, type: string, optional: boolean }>>()

  /** The function's parameters; as in PostgREST, trailing parameters with defaults may be left out. */
  async function signature (fn: string) {
    let args = signatures.get(fn)
    if (!args) {
      const rows = await sql.query<{ args: string }>(`
        select (select coalesce(json_agg(json_build_object('name', a.name, 'type', format_type(a.type, null),
                  'optional', a.ord > p.pronargs - p.pronargdefaults) order by a.ord), '[]')
                from unnest(coalesce(p.proargnames, '{}'), p.proargtypes::oid[]) with ordinality as a(name, type, ord))::text as args
        from pg_proc p where p.proname = $1 and p.pronamespace = 'public'::regnamespace`, [fn])
      if (rows.length !== 1) return null
      args = JSON.parse(rows[0].args) as Array<{ name: string, type: string, optional: boolean }>
      signatures.set(fn, args)
    }
    return args
  }

  /** The role a request runs as, or null when its keys are not JWTs signed with the secret. */
  function roleOf (req: IncomingMessage): string | null {
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1]
    // The gateway admits only a valid `apikey`; PostgREST then takes the role from the bearer token.
    const keys = [req.headers.apikey, bearer ?? req.headers.apikey]
    let role: unknown = null
    for (const key of keys) {
      if (typeof key !== 'string') return null
      try {
        role = (verify(key) as { role?: unknown }).role
      } catch {
        return null
      }
    }
    return typeof role === 'string' && ROLE.test(role) ? role : null
  }

  async function rpc (fn: string, body: Record<string, unknown>, role: string): Promise<{ status: number, body: string }> {
    const all = /^[a-z_][a-z0-9_]*$/.test(fn) ? await signature(fn) : null
    const names = Object.keys(body).sort()
    const args = all?.filter(a => !a.optional || names.includes(a.name))
    if (!args || args.map(a => a.name).sort().join() !== names.join()) {
      return error(404, {
        code: 'PGRST202',
        message: `Could not find the function public.${fn}(${names.join(', ')}) in the schema cache`,
        details: `Searched for the function public.${fn} with parameters ${names.join(', ') || 'none'}`,
        hint: null
      })
    }
    const call = `${fn}(${args.map(a => `"${a.name}" := _."${a.name}"`).join(', ')})`
    const text = args.length === 0
      ? `select coalesce(to_jsonb(${call})::text, 'null') as body`
      : `select coalesce(to_jsonb(${call})::text, 'null') as body
         from json_to_record($1::text::json) as _(${args.map(a => `"${a.name}" ${a.type}`).join(', ')})`
    const rows = await sql.transaction(async tx => {
      await tx.exec(`set local role "${role}"`)
      return await tx.query<{ body: string }>(text, args.length === 0 ? [] : [JSON.stringify(body)])
    })
    return { status: 200, body: rows[0].body }
  }

  async function handle (req: IncomingMessage, res: ServerResponse) {
    const match = /^\/rest\/v1\/rpc\/([^/?]+)(\?.*)?$/.exec(req.url ?? '')
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)

    const role = roleOf(req)
    if (role === null) {
      return send(res, error(401, { code: 'PGRST301', message: 'Invalid API key', details: null, hint: 'Double check your Supabase `anon` or `service_role` API key.' }))
    }
    if (!match) return send(res, error(404, { code: 'PGRST125', message: `Invalid path specified in request URL: ${req.url}`, details: null, hint: null }))
    if (req.method !== 'POST') return send(res, error(405, { code: 'PGRST117', message: `Unsupported HTTP method: ${req.method}`, details: null, hint: null }))

    let body: unknown
    try {
      const text = Buffer.concat(chunks).toString('utf8')
      body = text === '' ? {} : JSON.parse(text)
    } catch (err) {
      return send(res, error(400, { code: 'PGRST102', message: 'Empty or invalid json', details: (err as Error).message, hint: null }))
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      return send(res, error(400, { code: 'PGRST102', message: 'Expected a JSON object of named arguments', details: null, hint: null }))
    }

    try {
      send(res, await rpc(decodeURIComponent(match[1]), body as Record<string, unknown>, role))
    } catch (err) {
      const e = err as { code?: unknown, message?: string, detail?: string, hint?: string }
      if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) {
        // PostgREST answers a privilege error 401 to the anonymous role, 403 to others.
        const status = e.code === '42501' && role === 'anon' ? 401 : statusForSqlState(e.code)
        send(res, error(status, { code: e.code, message: e.message ?? '', details: e.detail ?? null, hint: e.hint ?? null }))
      } else {
        // No SQLSTATE: the database could not be reached.
        send(res, error(503, { code: 'PGRST001', message: 'Database client error. Retrying the connection.', details: e.message ?? null, hint: null }))
      }
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(err => {
      res.destroy(err as Error)
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo

  return {
    url: `http://127.0.0.1:${port}`,
    async close () {
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}

function error (status: number, body: PostgrestError) {
  return { status, body: JSON.stringify(body) }
}

function send (res: ServerResponse, reply: { status: number, body: string }) {
  res.writeHead(reply.status, { 'content-type': 'application/json; charset=utf-8' })
  res.end(reply.body)
}

/** PostgREST's table of SQLSTATE to HTTP status (docs.postgrest.org, "Errors"). */
export function statusForSqlState (code: string): number {
  switch (code) {
    case '23503': case '23505': return 409
    case '25006': return 405
    case '53400': return 500
    case 'P0001': return 400
    case '42883': case '42P01': return 404
    case '42P17': return 500
    case '42501': return 403
  }
  if (/^(08|53)/.test(code)) return 503
  if (/^(0L|0P|28)/.test(code)) return 403
  if (/^(09|25|2D|38|39|3B|40|54|55|57|58|F0|HV|P0|XX)/.test(code)) return 500
  return 400
}
