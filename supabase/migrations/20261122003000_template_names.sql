-- Template names are unique within their scope (the organization, or the owner
-- when the owner has none), so send-template can name a template instead of
-- giving its id.
--
-- Existing duplicates do not stop the migration: the oldest template keeps its
-- name and each later one is renamed "<name> (<id>)", which is unique because the
-- id is. Ids do not change, so sends by id keep working.
with ranked as (
  select id, row_number() over (
    partition by organization_id, case when organization_id is null then owner_id end, name
    order by created_at, id) as n
  from templates)
update templates t set name = t.name || ' (' || t.id || ')'
from ranked r where r.id = t.id and r.n > 1;

create unique index if not exists templates_org_name_key on templates (organization_id, name)
  where organization_id is not null;
create unique index if not exists templates_owner_name_key on templates (owner_id, name)
  where organization_id is null;

-- {"template": …}, or {"error": "name_taken"} when the scope already has that name.
create or replace function gatehouse_template_create(p_org text, p_owner text, p_name text, p_content text)
returns jsonb language sql as $$
  with created as (
    insert into templates (organization_id, owner_id, name, content) values (p_org, p_owner, p_name, p_content)
    on conflict do nothing
    returning *)
  select coalesce((select jsonb_build_object('template', gatehouse_template_json(c)) from created c),
    jsonb_build_object('error', 'name_taken'))
$$;

-- A template of the scope by its id or by its name; an id wins over a name that looks like one.
create or replace function gatehouse_template_find(p_org text, p_owner text, p_key text) returns jsonb
language sql stable as $$
  select gatehouse_template_json(t) from templates t
  where (t.id = case when p_key ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then p_key::uuid end
         or t.name = p_key)
    and ((p_org is not null and t.organization_id = p_org) or (p_org is null and t.organization_id is null and t.owner_id = p_owner))
  order by t.name = p_key
  limit 1
$$;

-- The schema version a server checks at start.
create or replace function gatehouse_schema_version() returns jsonb
language sql immutable as $$ select jsonb_build_object('version', '20261122003000') $$;

-- Nothing of this migration is reachable by anon or authenticated on Supabase.
select gatehouse_seal();
