-- gatehouse schema. Every multi-row or atomic operation is a SQL function so the
-- three storage backends (PGlite, Postgres, Supabase via PostgREST rpc) share one
-- implementation. Functions return jsonb with ISO-8601 UTC timestamps so every
-- backend hands the service identical values.

create table if not exists users (
  id text primary key default gen_random_uuid()::text,
  clerk_id text unique,
  email text,
  name text,
  plan_type text not null default 'free',
  credits integer not null default 0,
  organization_id text,
  role text not null default 'user' check (role in ('user', 'admin')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index if not exists users_organization_idx on users (organization_id);

create table if not exists api_tokens (
  id text primary key,                       -- the token's jti; the token itself is never stored
  user_id text not null references users (id) on delete cascade,
  created_by text references users (id) on delete set null,
  name text,
  expires_at timestamptz,
  revoked_at timestamptz,
  last_used_at timestamptz,
  created_at timestamptz not null default now()
);
create index if not exists api_tokens_user_idx on api_tokens (user_id);

create table if not exists templates (
  id uuid primary key default gen_random_uuid(),
  organization_id text,                      -- null: private to owner_id
  owner_id text references users (id) on delete cascade,
  name text not null,
  content text not null,
  created_at timestamptz not null default now()
);
create index if not exists templates_scope_idx on templates (organization_id, owner_id);

-- One body per send, one row per recipient: a 10,000-recipient send stores the content once.
create table if not exists message_bodies (
  id uuid primary key default gen_random_uuid(),
  sender_id text not null,
  content text not null,
  template_id uuid,
  created_at timestamptz not null default now()
);

create table if not exists messages (
  seq bigint generated always as identity primary key,   -- delivery order and inbox cursor
  id uuid not null unique default gen_random_uuid(),     -- what clients see and de-duplicate on
  body_id uuid not null references message_bodies (id) on delete cascade,
  recipient_id text not null references users (id) on delete cascade,
  acked_at timestamptz
);
create index if not exists messages_pending_idx on messages (recipient_id, seq) where acked_at is null;
create index if not exists messages_recipient_idx on messages (recipient_id, seq);

create table if not exists idempotency_keys (
  caller_id text not null,
  key text not null,
  request_hash text not null,
  response jsonb,
  created_at timestamptz not null default now(),
  primary key (caller_id, key)
);

-- Helpers ------------------------------------------------------------------

create or replace function gatehouse_iso(t timestamptz) returns text
language sql immutable as $$
  select to_char(t at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

create or replace function gatehouse_user_json(u users) returns jsonb
language sql stable as $$
  select jsonb_build_object(
    'id', u.id, 'clerkId', u.clerk_id, 'email', u.email, 'name', u.name,
    'planType', u.plan_type, 'credits', u.credits, 'organizationId', u.organization_id,
    'role', u.role, 'createdAt', gatehouse_iso(u.created_at), 'updatedAt', gatehouse_iso(u.updated_at))
$$;

create or replace function gatehouse_token_json(t api_tokens) returns jsonb
language sql stable as $$
  select jsonb_build_object(
    'id', t.id, 'userId', t.user_id, 'createdBy', t.created_by, 'name', t.name,
    'expiresAt', gatehouse_iso(t.expires_at), 'revokedAt', gatehouse_iso(t.revoked_at),
    'lastUsedAt', gatehouse_iso(t.last_used_at), 'createdAt', gatehouse_iso(t.created_at))
$$;

create or replace function gatehouse_health() returns jsonb
language sql stable as $$ select jsonb_build_object('ok', true, 'now', gatehouse_iso(now())) $$;

-- Users --------------------------------------------------------------------

create or replace function gatehouse_user_get(p_id text) returns jsonb
language sql stable as $$ select gatehouse_user_json(u) from users u where u.id = p_id $$;

create or replace function gatehouse_user_by_clerk_id(p_clerk_id text) returns jsonb
language sql stable as $$ select gatehouse_user_json(u) from users u where u.clerk_id = p_clerk_id $$;

-- Creates or updates a user, keyed by id when given, else by clerk_id. Keys absent
-- from p_user keep their stored value. Returns {"user": …} or {"error": "conflict"}.
create or replace function gatehouse_user_upsert(p_user jsonb) returns jsonb
language plpgsql as $$
declare
  v users;
  v_id text := p_user->>'id';
begin
  if v_id is null and p_user->>'clerk_id' is not null then
    select id into v_id from users where clerk_id = p_user->>'clerk_id';
  end if;
  insert into users as u (id, clerk_id, email, name, plan_type, credits, organization_id, role)
  values (coalesce(v_id, gen_random_uuid()::text), p_user->>'clerk_id', p_user->>'email', p_user->>'name',
          coalesce(p_user->>'plan_type', 'free'), coalesce((p_user->>'credits')::integer, 0),
          p_user->>'organization_id', coalesce(p_user->>'role', 'user'))
  on conflict (id) do update set
    clerk_id = case when p_user ? 'clerk_id' then excluded.clerk_id else u.clerk_id end,
    email = case when p_user ? 'email' then excluded.email else u.email end,
    name = case when p_user ? 'name' then excluded.name else u.name end,
    plan_type = case when p_user ? 'plan_type' then excluded.plan_type else u.plan_type end,
    credits = case when p_user ? 'credits' then excluded.credits else u.credits end,
    organization_id = case when p_user ? 'organization_id' then excluded.organization_id else u.organization_id end,
    role = case when p_user ? 'role' then excluded.role else u.role end,
    updated_at = now()
  returning * into v;
  return jsonb_build_object('user', gatehouse_user_json(v));
exception when unique_violation then
  return jsonb_build_object('error', 'conflict');
end $$;

-- Removing a user removes their tokens (so they stop authenticating), templates and inbox.
create or replace function gatehouse_user_delete(p_id text, p_clerk_id text) returns jsonb
language sql as $$
  with deleted as (
    delete from users where (p_id is not null and id = p_id) or (p_clerk_id is not null and clerk_id = p_clerk_id)
    returning id)
  select jsonb_build_object('deletedIds', coalesce(jsonb_agg(id), '[]'::jsonb)) from deleted
$$;

-- API tokens ---------------------------------------------------------------

create or replace function gatehouse_token_create(p_id text, p_user_id text, p_created_by text, p_name text, p_expires_at timestamptz)
returns jsonb language plpgsql as $$
declare v api_tokens;
begin
  if not exists (select 1 from users where id = p_user_id) then
    return jsonb_build_object('error', 'user_not_found');
  end if;
  insert into api_tokens (id, user_id, created_by, name, expires_at)
  values (p_id, p_user_id, p_created_by, p_name, p_expires_at)
  returning * into v;
  return jsonb_build_object('token', gatehouse_token_json(v),
    'user', (select gatehouse_user_json(u) from users u where u.id = p_user_id));
end $$;

-- Looks a token up with its owner in one round trip; last_used_at is written at
-- most once a minute so authentication does not turn every request into a write.
create or replace function gatehouse_token_authenticate(p_id text) returns jsonb
language plpgsql as $$
declare
  v api_tokens;
  v_user users;
begin
  update api_tokens set last_used_at = now()
   where id = p_id and revoked_at is null and (last_used_at is null or last_used_at < now() - interval '1 minute');
  select * into v from api_tokens where id = p_id;
  if not found then return null; end if;
  select * into v_user from users where id = v.user_id;
  return jsonb_build_object('token', gatehouse_token_json(v), 'user', gatehouse_user_json(v_user));
end $$;

create or replace function gatehouse_token_list(p_user_id text) returns jsonb
language sql stable as $$
  select coalesce(jsonb_agg(gatehouse_token_json(t) order by t.created_at desc, t.id), '[]'::jsonb)
  from api_tokens t where p_user_id is null or t.user_id = p_user_id
$$;

-- Idempotent: revoking twice keeps the first revocation time.
create or replace function gatehouse_token_revoke(p_id text) returns jsonb
language sql as $$
  with revoked as (
    update api_tokens set revoked_at = coalesce(revoked_at, now()) where id = p_id returning *)
  select gatehouse_token_json(r) from revoked r
$$;

-- Templates ----------------------------------------------------------------
-- A template belongs to an organization, or to its owner when the owner has none.

create or replace function gatehouse_template_json(t templates) returns jsonb
language sql stable as $$
  select jsonb_build_object('id', t.id, 'name', t.name, 'content', t.content,
    'organizationId', t.organization_id, 'ownerId', t.owner_id, 'createdAt', gatehouse_iso(t.created_at))
$$;

create or replace function gatehouse_template_create(p_org text, p_owner text, p_name text, p_content text)
returns jsonb language sql as $$
  with created as (
    insert into templates (organization_id, owner_id, name, content) values (p_org, p_owner, p_name, p_content) returning *)
  select gatehouse_template_json(c) from created c
$$;

create or replace function gatehouse_template_list(p_org text, p_owner text) returns jsonb
language sql stable as $$
  select coalesce(jsonb_agg(gatehouse_template_json(t) order by t.created_at, t.id), '[]'::jsonb)
  from templates t
  where (p_org is not null and t.organization_id = p_org) or (p_org is null and t.organization_id is null and t.owner_id = p_owner)
$$;

create or replace function gatehouse_template_get(p_org text, p_owner text, p_id uuid) returns jsonb
language sql stable as $$
  select gatehouse_template_json(t) from templates t
  where t.id = p_id and ((p_org is not null and t.organization_id = p_org) or (p_org is null and t.organization_id is null and t.owner_id = p_owner))
$$;

create or replace function gatehouse_template_delete(p_org text, p_owner text, p_id uuid) returns jsonb
language sql as $$
  with deleted as (
    delete from templates t
    where t.id = p_id and ((p_org is not null and t.organization_id = p_org) or (p_org is null and t.organization_id is null and t.owner_id = p_owner))
    returning id)
  select jsonb_build_object('deleted', exists (select 1 from deleted))
$$;

-- Messages -----------------------------------------------------------------

-- Stores one send atomically: idempotency check, recipient check, one body row and
-- one batched insert of every recipient's message. Returns
--   {"count", "messages": [{id, recipientId, seq}], "createdAt", "replayed"}
-- or {"error": "invalid_recipients", "ids": […]} / {"error": "idempotency_mismatch"}.
create or replace function gatehouse_send(
  p_sender text, p_sender_org text, p_is_admin boolean, p_recipients text[],
  p_content text, p_template_id uuid, p_idempotency_key text, p_request_hash text)
returns jsonb language plpgsql as $$
declare
  v_existing idempotency_keys;
  v_bad jsonb;
  v_body message_bodies;
  v_messages jsonb;
  v_result jsonb;
begin
  if p_idempotency_key is not null then
    delete from idempotency_keys
     where caller_id = p_sender and key = p_idempotency_key and created_at < now() - interval '24 hours';
    -- The insert doubles as a lock: a concurrent retry waits here for the first to finish.
    insert into idempotency_keys (caller_id, key, request_hash)
    values (p_sender, p_idempotency_key, p_request_hash)
    on conflict do nothing;
    if not found then
      select * into v_existing from idempotency_keys where caller_id = p_sender and key = p_idempotency_key;
      if v_existing.request_hash <> p_request_hash then
        return jsonb_build_object('error', 'idempotency_mismatch');
      end if;
      return v_existing.response || jsonb_build_object('replayed', true);
    end if;
  end if;

  select coalesce(jsonb_agg(r order by ord), '[]'::jsonb) into v_bad
  from unnest(p_recipients) with ordinality as t(r, ord)
  where not exists (
    select 1 from users u
    where u.id = t.r and (p_is_admin or u.id = p_sender or (p_sender_org is not null and u.organization_id = p_sender_org)));
  if jsonb_array_length(v_bad) > 0 then
    if p_idempotency_key is not null then
      delete from idempotency_keys where caller_id = p_sender and key = p_idempotency_key;
    end if;
    return jsonb_build_object('error', 'invalid_recipients', 'ids', v_bad);
  end if;

  insert into message_bodies (sender_id, content, template_id)
  values (p_sender, p_content, p_template_id)
  returning * into v_body;

  with inserted as (
    insert into messages (body_id, recipient_id)
    select v_body.id, r from unnest(p_recipients) with ordinality as t(r, ord) order by ord
    returning id, seq, recipient_id)
  select coalesce(jsonb_agg(jsonb_build_object('id', id, 'recipientId', recipient_id, 'seq', seq) order by seq), '[]'::jsonb)
    into v_messages from inserted;

  v_result := jsonb_build_object('count', jsonb_array_length(v_messages), 'messages', v_messages,
    'createdAt', gatehouse_iso(v_body.created_at), 'replayed', false);
  if p_idempotency_key is not null then
    update idempotency_keys set response = v_result where caller_id = p_sender and key = p_idempotency_key;
  end if;
  return v_result;
end $$;

create or replace function gatehouse_message_json(m messages, b message_bodies) returns jsonb
language sql stable as $$
  select jsonb_build_object('id', m.id, 'seq', m.seq, 'senderId', b.sender_id, 'content', b.content,
    'templateId', b.template_id, 'createdAt', gatehouse_iso(b.created_at), 'acked', m.acked_at is not null)
$$;

-- Unacknowledged messages after a sequence number, oldest first: what a socket replays.
create or replace function gatehouse_pending(p_recipient text, p_after_seq bigint, p_limit integer) returns jsonb
language sql stable as $$
  select coalesce(jsonb_agg(j order by seq), '[]'::jsonb) from (
    select m.seq, gatehouse_message_json(m, b) as j
    from messages m join message_bodies b on b.id = m.body_id
    where m.recipient_id = p_recipient and m.acked_at is null and m.seq > coalesce(p_after_seq, 0)
    order by m.seq limit p_limit) s
$$;

-- Every message after a cursor, acknowledged or not: the HTTP inbox.
create or replace function gatehouse_inbox(p_recipient text, p_after_seq bigint, p_limit integer) returns jsonb
language sql stable as $$
  select coalesce(jsonb_agg(j order by seq), '[]'::jsonb) from (
    select m.seq, gatehouse_message_json(m, b) as j
    from messages m join message_bodies b on b.id = m.body_id
    where m.recipient_id = p_recipient and m.seq > coalesce(p_after_seq, 0)
    order by m.seq limit p_limit) s
$$;

-- Acknowledgements of many recipients at once, as parallel arrays (recipient, message id):
-- the hub writes every socket's acks of a moment in one statement. A message is only
-- acknowledged by its own recipient.
create or replace function gatehouse_ack(p_recipients text[], p_ids uuid[]) returns jsonb
language sql as $$
  with acked as (
    update messages m set acked_at = now()
    from unnest(p_recipients, p_ids) as a (recipient_id, id)
    where m.id = a.id and m.recipient_id = a.recipient_id and m.acked_at is null
    returning m.id)
  select jsonb_build_object('acked', (select count(*) from acked))
$$;

create or replace function gatehouse_prune_idempotency_keys() returns jsonb
language sql as $$
  with pruned as (delete from idempotency_keys where created_at < now() - interval '24 hours' returning 1)
  select jsonb_build_object('pruned', (select count(*) from pruned))
$$;
