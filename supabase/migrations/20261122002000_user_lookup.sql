-- Users created by the Clerk webhook get a generated id, so API clients find
-- them by what they know: the Clerk user id or the e-mail address. E-mail is not
-- unique (nor verified here), so the lookup returns a list, matched case-insensitively.

create index if not exists users_email_lower_idx on users (lower(email));

-- Users matching every given criterion (null: not a criterion), oldest first,
-- at most 100. Returns a jsonb array.
create or replace function gatehouse_user_find(p_clerk_id text, p_email text) returns jsonb
language sql stable as $$
  select coalesce(jsonb_agg(s.body order by s.created_at, s.id), '[]'::jsonb)
  from (
    select gatehouse_user_json(u) as body, u.created_at, u.id
    from users u
    where (p_clerk_id is null or u.clerk_id = p_clerk_id)
      and (p_email is null or lower(u.email) = lower(p_email))
    order by u.created_at, u.id
    limit 100
  ) s
$$;

create or replace function gatehouse_schema_version() returns jsonb
language sql immutable as $$ select jsonb_build_object('version', '20261122002000') $$;

-- Nothing of this migration is reachable by anon or authenticated on Supabase.
select gatehouse_seal();
