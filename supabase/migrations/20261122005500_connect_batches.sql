-- What a socket needs on connect, asked for many sockets in one call: during a
-- connect storm (every client reconnecting after a deploy) one statement answers
-- hundreds of sockets instead of two statements each.

-- The users among p_ids that exist, in no particular order; unknown ids are left out.
create or replace function gatehouse_users_get(p_ids text[]) returns jsonb
language sql stable as $$
  select coalesce(jsonb_agg(gatehouse_user_json(u)), '[]'::jsonb)
  from users u where u.id = any(p_ids)
$$;

-- The recipients among p_recipients with at least one unacknowledged message:
-- only their sockets need a replay query (messages_pending_idx answers each).
create or replace function gatehouse_pending_recipients(p_recipients text[]) returns jsonb
language sql stable as $$
  select coalesce(jsonb_agg(r.id), '[]'::jsonb)
  from (select distinct unnest(p_recipients) as id) r
  where exists (select 1 from messages m where m.recipient_id = r.id and m.acked_at is null)
$$;

create or replace function gatehouse_schema_version() returns jsonb
language sql immutable as $$ select jsonb_build_object('version', '20261122005500') $$;

-- Nothing of this migration is reachable by anon or authenticated on Supabase.
select gatehouse_seal();
