-- Retention: data that does not grow forever, and user deletion that cannot time out.
--
-- What this relies on from the message tables (and nothing else of their layout):
--   messages: seq (primary key), body_id and recipient_id (a body's or a user's
--             messages are deleted with it by the triggers of the cheap-rows migration),
--             acked_at (null until acked), the index on (body_id, recipient_id), and the
--             one on (recipient_id, xact, seq) to walk a deleted user's inbox;
--   message_bodies: id, created_at; a body and all its messages are written in one
--             transaction (gatehouse_send), so a committed body without messages is orphaned;
--   idempotency_keys: caller_id, key, created_at (responses are already small: one id per send).

-- Indexes foreign keys and pruning need: without them deleting a user scans
-- api_tokens and templates, and pruning scans every table it prunes (a body's
-- messages are found by messages_body_recipient_idx).
create index if not exists api_tokens_created_by_idx on api_tokens (created_by);
create index if not exists templates_owner_idx on templates (owner_id);
create index if not exists messages_acked_idx on messages (acked_at) where acked_at is not null;
create index if not exists message_bodies_created_idx on message_bodies (created_at, id);
create index if not exists idempotency_keys_created_idx on idempotency_keys (created_at);

-- Deleting a user is two steps. gatehouse_user_delete marks the row deleted and
-- removes what authenticates them (API tokens) and what others see (templates,
-- personal fields) in one short transaction; their inbox, which may hold millions
-- of rows, goes in batches through gatehouse_prune, which finally deletes the row.
alter table users add column if not exists deleted_at timestamptz;
create index if not exists users_deleted_idx on users (deleted_at) where deleted_at is not null;

create or replace function gatehouse_user_delete(p_id text, p_clerk_id text) returns jsonb
language plpgsql as $$
declare v_ids text[];
begin
  with doomed as (
    update users set deleted_at = now(), updated_at = now(), clerk_id = null, email = null, name = null
     where deleted_at is null
       and ((p_id is not null and id = p_id) or (p_clerk_id is not null and clerk_id = p_clerk_id))
    returning id)
  select coalesce(array_agg(id), '{}') into v_ids from doomed;
  delete from api_tokens where user_id = any (v_ids);
  delete from templates where owner_id = any (v_ids);
  return jsonb_build_object('deletedIds', to_jsonb(v_ids));
end $$;

-- A user being deleted is no longer found: their access tokens are refused.
create or replace function gatehouse_user_get(p_id text) returns jsonb
language sql stable as $$ select gatehouse_user_json(u) from users u where u.id = p_id and u.deleted_at is null $$;

-- An API token created while its owner was being deleted is refused too (user null).
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
  select * into v_user from users where id = v.user_id and deleted_at is null;
  return jsonb_build_object('token', gatehouse_token_json(v), 'user', gatehouse_user_json(v_user));
end $$;

create or replace function gatehouse_token_create(
  p_id text, p_user_id text, p_created_by text, p_name text, p_expires_at timestamptz, p_scopes text[] default null
) returns jsonb language plpgsql as $$
declare v api_tokens;
begin
  if not exists (select 1 from users where id = p_user_id and deleted_at is null) then
    return jsonb_build_object('error', 'user_not_found');
  end if;
  insert into api_tokens (id, user_id, created_by, name, expires_at, scopes)
  values (p_id, p_user_id, p_created_by, p_name, p_expires_at, p_scopes)
  returning * into v;
  return jsonb_build_object('token', gatehouse_token_json(v),
    'user', (select gatehouse_user_json(u) from users u where u.id = p_user_id));
end $$;

-- The id of a user still being deleted cannot be taken again until the deletion
-- is done: {"error": "deleting"}.
create or replace function gatehouse_user_upsert(p_user jsonb) returns jsonb
language plpgsql as $$
declare
  v users;
  v_id text := p_user->>'id';
begin
  if v_id is not null and exists (select 1 from users where id = v_id and deleted_at is not null) then
    return jsonb_build_object('error', 'deleting');
  end if;
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
  where u.deleted_at is null
  returning * into v;
  if not found then return jsonb_build_object('error', 'deleting'); end if;
  return jsonb_build_object('user', gatehouse_user_json(v));
exception when unique_violation then
  return jsonb_build_object('error', 'conflict');
end $$;

-- When the next pruning run is due, and how far the sweep for orphaned bodies got.
create table if not exists gatehouse_prune_state (
  singleton boolean primary key default true check (singleton),
  next_at timestamptz not null default '-infinity',
  sweep_after_at timestamptz not null default '-infinity',
  sweep_after_id uuid not null default '00000000-0000-0000-0000-000000000000'
);
insert into gatehouse_prune_state default values on conflict do nothing;

-- One batch of pruning: at most p_batch rows of each kind, so every call stays well
-- within the statement timeout. The caller repeats while "more" is true.
--
-- - acknowledged messages acked more than p_acked_ttl seconds ago (0: kept for good);
-- - unacknowledged messages sent more than p_unacked_ttl seconds ago (0: kept for good);
-- - messages of users being deleted, then those users' rows;
-- - bodies left without messages: those of the messages deleted here, and a sweep of
--   p_batch bodies per call, oldest first, for any left earlier;
-- - idempotency keys older than p_idempotency_ttl seconds.
--
-- Calls are serialized by an advisory lock: a call that cannot take it at once
-- returns {"ran": false, "reason": "busy"}. A run that finishes sets the next one
-- p_every_ms later; until then calls return {"ran": false, "reason": "not_due"},
-- unless a user is being deleted. So many processes may call; one at a time
-- prunes, and none repeats what another just did.
create or replace function gatehouse_prune(
  p_acked_ttl integer, p_unacked_ttl integer, p_idempotency_ttl integer, p_batch integer, p_every_ms integer
) returns jsonb
language plpgsql as $$
declare
  v_state gatehouse_prune_state;
  v_user text;
  v_count integer;
  v_bodies uuid[] := '{}';
  v_part uuid[];
  v_acked integer := 0;
  v_unacked integer := 0;
  v_user_messages integer := 0;
  v_users integer := 0;
  v_orphans integer := 0;
  v_swept integer := 0;
  v_keys integer := 0;
  v_sweep record;
  v_more boolean;
begin
  if p_batch is null or p_batch < 1 or p_acked_ttl < 0 or p_unacked_ttl < 0 or p_idempotency_ttl < 1 or p_every_ms < 0 then
    raise exception 'invalid pruning settings' using errcode = '22023';
  end if;
  if not pg_try_advisory_xact_lock(727276) then
    return jsonb_build_object('ran', false, 'reason', 'busy');
  end if;
  select * into v_state from gatehouse_prune_state;
  if v_state.next_at > now() and not exists (select 1 from users where deleted_at is not null) then
    return jsonb_build_object('ran', false, 'reason', 'not_due', 'nextAt', gatehouse_iso(v_state.next_at));
  end if;

  -- Rows someone else holds (an ack, a send) are skipped, not waited for: a later batch takes them.
  if p_acked_ttl > 0 then
    with gone as (
      delete from messages m where m.seq in (
        select seq from messages where acked_at < now() - make_interval(secs => p_acked_ttl)
        order by acked_at limit p_batch for update skip locked)
      returning m.body_id)
    select count(*), coalesce(array_agg(distinct body_id), '{}') into v_acked, v_part from gone;
    v_bodies := v_bodies || v_part;
  end if;

  if p_unacked_ttl > 0 then
    with gone as (
      delete from messages m where m.seq in (
        select m2.seq from message_bodies b join messages m2 on m2.body_id = b.id
        where b.created_at < now() - make_interval(secs => p_unacked_ttl) and m2.acked_at is null
        order by b.created_at limit p_batch for update of m2 skip locked)
      returning m.body_id)
    select count(*), coalesce(array_agg(distinct body_id), '{}') into v_unacked, v_part from gone;
    v_bodies := v_bodies || v_part;
  end if;

  -- One user after another, oldest deletion first, within the batch. In index order, so
  -- each batch stops after the rows it takes.
  for v_user in select id from users where deleted_at is not null order by deleted_at, id limit 100 loop
    exit when v_user_messages >= p_batch;
    with gone as (
      delete from messages m where m.seq in (
        select seq from messages where recipient_id = v_user
        order by xact, seq limit p_batch - v_user_messages for update skip locked)
      returning m.body_id)
    select count(*), coalesce(array_agg(distinct body_id), '{}') into v_count, v_part from gone;
    v_user_messages := v_user_messages + v_count;
    v_bodies := v_bodies || v_part;
    -- The row goes once its inbox is empty. A send that raced the deletion holds the row
    -- (its foreign key check) until it commits; the cascade then takes its few messages.
    if v_user_messages < p_batch then
      delete from users u where u.id = v_user and not exists (select 1 from messages m where m.recipient_id = u.id);
      if found then v_users := v_users + 1; end if;
    end if;
  end loop;

  with gone as (
    delete from message_bodies b where b.id = any (v_bodies)
      and not exists (select 1 from messages m where m.body_id = b.id)
    returning 1)
  select count(*) into v_orphans from gone;

  -- The sweep: bodies orphaned before this migration (a deleted user's inbox took its
  -- messages but left the bodies) or by a racing send's messages going with their user.
  select count(*) as n, max(created_at) as last_at, (array_agg(id order by created_at desc, id desc))[1] as last_id
    into v_sweep
  from (select id, created_at from message_bodies
        where (created_at, id) > (v_state.sweep_after_at, v_state.sweep_after_id)
        order by created_at, id limit p_batch) s;
  with gone as (
    delete from message_bodies b
    where (b.created_at, b.id) > (v_state.sweep_after_at, v_state.sweep_after_id)
      and (b.created_at, b.id) <= (v_sweep.last_at, v_sweep.last_id)
      and not exists (select 1 from messages m where m.body_id = b.id)
    returning 1)
  select count(*) into v_swept from gone;
  if v_sweep.n < p_batch then
    update gatehouse_prune_state set sweep_after_at = '-infinity', sweep_after_id = '00000000-0000-0000-0000-000000000000';
  else
    update gatehouse_prune_state set sweep_after_at = v_sweep.last_at, sweep_after_id = v_sweep.last_id;
  end if;

  with gone as (
    delete from idempotency_keys k where (k.caller_id, k.key) in (
      select caller_id, key from idempotency_keys where created_at < now() - make_interval(secs => p_idempotency_ttl)
      order by created_at limit p_batch for update skip locked)
    returning 1)
  select count(*) into v_keys from gone;

  v_more := v_acked = p_batch or v_unacked = p_batch or v_user_messages = p_batch or v_keys = p_batch
    or exists (select 1 from users where deleted_at is not null);
  if not v_more then
    update gatehouse_prune_state set next_at = now() + make_interval(secs => p_every_ms / 1000.0);
  end if;
  return jsonb_build_object('ran', true, 'more', v_more,
    'acked', v_acked, 'unacked', v_unacked, 'userMessages', v_user_messages, 'users', v_users,
    'bodies', v_orphans + v_swept, 'idempotencyKeys', v_keys);
end $$;

create or replace function gatehouse_schema_version() returns jsonb
language sql immutable as $$ select jsonb_build_object('version', '20261122011000') $$;

-- Nothing of this migration is reachable by anon or authenticated on Supabase.
select gatehouse_seal();
