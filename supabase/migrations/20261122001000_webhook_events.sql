-- Clerk webhooks arrive through svix, which retries, neither orders nor
-- de-duplicates deliveries, and accepts a captured delivery again for as long as
-- its timestamp is within the signature window. Each delivery is therefore
-- applied in one transaction that records its svix id, compares the event with
-- the last one applied to that Clerk user, and only then changes the user.

-- svix ids already processed. Kept longer than svix retries one message (about
-- a day and a half), which is far longer than the 5-minute signature window.
create table if not exists webhook_deliveries (
  id text primary key,
  received_at timestamptz not null default now()
);
create index if not exists webhook_deliveries_received_idx on webhook_deliveries (received_at);

-- Per Clerk user: when the last applied event happened, and whether the user was
-- deleted. Clerk never reuses a user id, so the tombstone is kept for good.
create table if not exists clerk_user_events (
  clerk_id text primary key,
  last_event_at timestamptz not null,
  deleted_at timestamptz
);

-- Applies one Clerk user event. p_type is 'user.upsert' (created or updated,
-- p_user the row as gatehouse_user_upsert takes it) or 'user.deleted'.
-- p_event_at orders events of one user: Clerk's updated_at, else the event time.
-- Returns {"outcome": "applied", "user"|"deletedIds": …}, or an outcome that
-- changed nothing: "duplicate" (svix id seen), "stale" (older than what is
-- stored), "deleted" (the user was deleted), "conflict" (the clerk_id belongs to
-- another row being written; not recorded, so Clerk's retry is applied).
create or replace function gatehouse_clerk_user_event(
  p_delivery_id text, p_type text, p_clerk_id text, p_event_at timestamptz, p_user jsonb
) returns jsonb
language plpgsql as $$
declare
  v_state clerk_user_events;
  v_result jsonb;
begin
  if p_type not in ('user.upsert', 'user.deleted') then
    raise exception 'unknown clerk event type %', p_type using errcode = '22023';
  end if;

  -- Old ids go a few at a time with each delivery, so the table stays bounded without a job.
  delete from webhook_deliveries where id in (
    select id from webhook_deliveries where received_at < now() - interval '3 days'
    order by received_at limit 20 for update skip locked);

  -- A concurrent duplicate waits here for the first and then finds the id taken.
  insert into webhook_deliveries (id) values (p_delivery_id) on conflict (id) do nothing;
  if not found then
    return jsonb_build_object('outcome', 'duplicate');
  end if;

  -- One event per Clerk user at a time: the row lock orders concurrent deliveries.
  insert into clerk_user_events (clerk_id, last_event_at) values (p_clerk_id, '-infinity')
  on conflict (clerk_id) do nothing;
  select * into v_state from clerk_user_events where clerk_id = p_clerk_id for update;

  if p_type = 'user.deleted' then
    -- A deletion is final whatever its order: nothing may bring the user back.
    update clerk_user_events
       set deleted_at = coalesce(deleted_at, p_event_at), last_event_at = greatest(last_event_at, p_event_at)
     where clerk_id = p_clerk_id;
    v_result := gatehouse_user_delete(null, p_clerk_id);
    return jsonb_build_object('outcome', 'applied', 'deletedIds', v_result->'deletedIds');
  end if;

  if v_state.deleted_at is not null then
    return jsonb_build_object('outcome', 'deleted');
  end if;
  if p_event_at < v_state.last_event_at then
    return jsonb_build_object('outcome', 'stale');
  end if;

  v_result := gatehouse_user_upsert(p_user || jsonb_build_object('clerk_id', p_clerk_id));
  if v_result ? 'error' then
    delete from webhook_deliveries where id = p_delivery_id;
    return jsonb_build_object('outcome', 'conflict');
  end if;
  update clerk_user_events set last_event_at = p_event_at where clerk_id = p_clerk_id;
  return jsonb_build_object('outcome', 'applied', 'user', v_result->'user');
end $$;

-- The schema version this database has: the newest migration applied. Every later
-- migration replaces this function with its own version, so a server can tell an
-- old schema at start on every backend (Supabase has no direct SQL, only rpc;
-- a database without this function predates it and is old too).
create or replace function gatehouse_schema_version() returns jsonb
language sql immutable as $$ select jsonb_build_object('version', '20261122001000') $$;

-- Nothing of this migration is reachable by anon or authenticated on Supabase.
select gatehouse_seal();
