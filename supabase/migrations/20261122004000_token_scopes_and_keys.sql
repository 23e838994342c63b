-- API tokens with scopes.
--
-- A token minted without scopes keeps doing everything its owner may do, as
-- before (scopes is null); a scoped token reaches only the routes its scopes
-- name. Scopes are read from this row at each request, like revocation, so they
-- are never trusted from the token itself.
alter table api_tokens add column if not exists scopes text[];

create or replace function gatehouse_token_json(t api_tokens) returns jsonb
language sql stable as $$
  select jsonb_build_object(
    'id', t.id, 'userId', t.user_id, 'createdBy', t.created_by, 'name', t.name,
    'scopes', to_jsonb(t.scopes),
    'expiresAt', gatehouse_iso(t.expires_at), 'revokedAt', gatehouse_iso(t.revoked_at),
    'lastUsedAt', gatehouse_iso(t.last_used_at), 'createdAt', gatehouse_iso(t.created_at))
$$;

-- One function, its new parameter defaulted: a server of the previous version
-- still calls it by name (PostgREST resolves rpc calls by parameter names, so
-- two overloads would be ambiguous to it).
drop function if exists gatehouse_token_create(text, text, text, text, timestamptz);
create or replace function gatehouse_token_create(
  p_id text, p_user_id text, p_created_by text, p_name text, p_expires_at timestamptz, p_scopes text[] default null
) returns jsonb language plpgsql as $$
declare v api_tokens;
begin
  if not exists (select 1 from users where id = p_user_id) then
    return jsonb_build_object('error', 'user_not_found');
  end if;
  insert into api_tokens (id, user_id, created_by, name, expires_at, scopes)
  values (p_id, p_user_id, p_created_by, p_name, p_expires_at, p_scopes)
  returning * into v;
  return jsonb_build_object('token', gatehouse_token_json(v),
    'user', (select gatehouse_user_json(u) from users u where u.id = p_user_id));
end $$;

-- Signing keys for asymmetric tokens (JWT_ALGORITHM=ES256), shared by every
-- process. A key is `next` (published in the JWKS, not yet signing), `current`
-- (signs new tokens), `previous` (verifies tokens it signed until they expire)
-- or `retired` (verifies nothing, its private key erased). Private keys are
-- stored encrypted by the service with a key-encryption key the database
-- never sees; only the current one is ever handed back.
create table if not exists gatehouse_signing_keys (
  kid text primary key,
  alg text not null,
  state text not null check (state in ('next', 'current', 'previous', 'retired')),
  public_jwk jsonb not null,
  private_key text,
  created_at timestamptz not null default now(),
  state_changed_at timestamptz not null default now()
);
-- At most one current and one next key.
create unique index if not exists gatehouse_signing_keys_active_idx on gatehouse_signing_keys (state) where state in ('current', 'next');

create or replace function gatehouse_signing_keys_json() returns jsonb
language sql stable as $$
  select coalesce(jsonb_agg(jsonb_build_object(
    'kid', k.kid, 'alg', k.alg, 'state', k.state, 'publicJwk', k.public_jwk,
    'privateKey', case when k.state = 'current' then k.private_key end,
    'createdAt', gatehouse_iso(k.created_at), 'stateChangedAt', gatehouse_iso(k.state_changed_at))
    order by k.created_at, k.kid), '[]'::jsonb)
  from gatehouse_signing_keys k
$$;

-- Every key, retired ones included (they refuse their tokens by being known).
create or replace function gatehouse_signing_keys() returns jsonb
language sql stable as $$ select gatehouse_signing_keys_json() $$;

-- The first current and next keys, unless another process created them first.
-- p_current, p_next: {kid, alg, publicJwk, privateKey}.
create or replace function gatehouse_signing_keys_init(p_current jsonb, p_next jsonb) returns jsonb
language plpgsql as $$
begin
  perform pg_advisory_xact_lock(hashtext('gatehouse_signing_keys'));
  if not exists (select 1 from gatehouse_signing_keys where state = 'current') then
    insert into gatehouse_signing_keys (kid, alg, state, public_jwk, private_key)
    select k->>'kid', k->>'alg', s, k->'publicJwk', k->>'privateKey'
    from (values (p_current, 'current'), (p_next, 'next')) as v (k, s)
    where not exists (select 1 from gatehouse_signing_keys where state = v.s);
  end if;
  return gatehouse_signing_keys_json();
end $$;

-- next becomes current, current becomes previous (verifying until its tokens
-- expire), and p_next is the new next key. Returns the keys, or
-- {"error": "not_initialized"} when there is no current and next key yet.
create or replace function gatehouse_signing_keys_rotate(p_next jsonb) returns jsonb
language plpgsql as $$
begin
  perform pg_advisory_xact_lock(hashtext('gatehouse_signing_keys'));
  if (select count(*) from gatehouse_signing_keys where state in ('current', 'next')) < 2 then
    return jsonb_build_object('error', 'not_initialized');
  end if;
  update gatehouse_signing_keys set state = 'previous', state_changed_at = now() where state = 'current';
  update gatehouse_signing_keys set state = 'current', state_changed_at = now() where state = 'next';
  insert into gatehouse_signing_keys (kid, alg, state, public_jwk, private_key)
  values (p_next->>'kid', p_next->>'alg', 'next', p_next->'publicJwk', p_next->>'privateKey');
  return jsonb_build_object('keys', gatehouse_signing_keys_json());
end $$;

-- Retires a previous key: its tokens are refused from then on. The current and
-- next keys cannot be retired (rotate first). Idempotent.
create or replace function gatehouse_signing_key_retire(p_kid text) returns jsonb
language plpgsql as $$
declare v_state text;
begin
  perform pg_advisory_xact_lock(hashtext('gatehouse_signing_keys'));
  select state into v_state from gatehouse_signing_keys where kid = p_kid;
  if v_state is null then return jsonb_build_object('error', 'not_found'); end if;
  if v_state in ('current', 'next') then return jsonb_build_object('error', 'active', 'state', v_state); end if;
  update gatehouse_signing_keys set state = 'retired', private_key = null,
    state_changed_at = case when state = 'retired' then state_changed_at else now() end
   where kid = p_kid;
  return jsonb_build_object('keys', gatehouse_signing_keys_json());
end $$;

create or replace function gatehouse_schema_version() returns jsonb
language sql immutable as $$ select jsonb_build_object('version', '20261122004000') $$;

-- Nothing of this migration is reachable by anon or authenticated on Supabase.
select gatehouse_seal();
