-- After a process may have missed "user removed" notices (its Redis subscription
-- was down), it checks every user holding a socket there: one call per batch of
-- users, not one per socket. Returns the jsonb array of the given ids that still
-- name a user.
create or replace function gatehouse_users_present(p_ids text[]) returns jsonb
language sql stable as $$
  select coalesce(jsonb_agg(u.id), '[]'::jsonb) from users u where u.id = any(p_ids)
$$;

create or replace function gatehouse_schema_version() returns jsonb
language sql immutable as $$ select jsonb_build_object('version', '20261122005000') $$;

-- Nothing of this migration is reachable by anon or authenticated on Supabase.
select gatehouse_seal();
