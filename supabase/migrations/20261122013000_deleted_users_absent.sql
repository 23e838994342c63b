-- A user being deleted (users.deleted_at set, their inbox still being pruned) is
-- absent from the batched lookups too, as it already is from gatehouse_user_get:
-- sockets connecting in a burst and the re-check after a lost Redis subscription
-- refuse them like a single request does.

create or replace function gatehouse_users_get(p_ids text[]) returns jsonb
language sql stable as $$
  select coalesce(jsonb_agg(gatehouse_user_json(u)), '[]'::jsonb)
  from users u where u.id = any(p_ids) and u.deleted_at is null
$$;

create or replace function gatehouse_users_present(p_ids text[]) returns jsonb
language sql stable as $$
  select coalesce(jsonb_agg(u.id), '[]'::jsonb) from users u where u.id = any(p_ids) and u.deleted_at is null
$$;

create or replace function gatehouse_schema_version() returns jsonb
language sql immutable as $$ select jsonb_build_object('version', '20261122013000') $$;

-- Nothing of this migration is reachable by anon or authenticated on Supabase.
select gatehouse_seal();
