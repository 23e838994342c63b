-- Seals the schema: only the service reaches the data.
--
-- On Supabase, default privileges grant every new table, sequence and function in
-- `public` to anon and authenticated, so the project's public anon key could read
-- every table and call every gatehouse_* function (making itself an admin, say).
-- Postgres itself grants EXECUTE on new functions to PUBLIC. gatehouse_seal()
-- takes all of that back, turns row level security on (no policies: anon and
-- authenticated see no rows even if granted), grants the service role what the
-- service uses, and pins each function's search_path.
--
-- It is idempotent, and every later migration calls it at its end:
--
--   select gatehouse_seal();
--
-- Ours are: the tables the first migration created, the migration record, any
-- table named gatehouse_*, and every table created or altered in the calling
-- transaction (that is, by the migration that calls it); and every gatehouse_*
-- function in the schema. Roles that do not exist (plain Postgres, the embedded
-- store) are skipped.
create or replace function gatehouse_seal() returns jsonb
language plpgsql as $$
declare
  v_schema name := current_schema();
  v_public_roles text;
  v_rel record;
  v_fn regprocedure;
  v_tables oid[] := '{}';
  v_functions integer := 0;
  v_service_role boolean := exists (select 1 from pg_roles where rolname = 'service_role');
begin
  select string_agg(quote_ident(r), ', ') into v_public_roles
  from unnest(array['anon', 'authenticated']) r
  where exists (select 1 from pg_roles where rolname = r);
  v_public_roles := concat_ws(', ', 'public', v_public_roles);

  for v_rel in
    select c.oid::regclass as rel, c.relkind
    from pg_class c
    where c.relnamespace = v_schema::regnamespace
      and c.relkind in ('r', 'p')
      and (c.relname in ('users', 'api_tokens', 'templates', 'message_bodies', 'messages', 'idempotency_keys')
           or c.relname like 'gatehouse\_%'
           or c.xmin = pg_current_xact_id()::xid)
  loop
    execute format('alter table %s enable row level security', v_rel.rel);
    execute format('revoke all on table %s from %s', v_rel.rel, v_public_roles);
    if v_service_role then
      execute format('revoke all on table %s from service_role', v_rel.rel);
      execute format('grant select, insert, update, delete on table %s to service_role', v_rel.rel);
    end if;
    v_tables := v_tables || v_rel.rel::oid;
  end loop;

  -- The sequences behind our tables' identity and serial columns.
  for v_rel in
    select distinct s.oid::regclass as rel, s.relkind
    from pg_class s
    join pg_depend d on d.classid = 'pg_class'::regclass and d.objid = s.oid and d.refclassid = 'pg_class'::regclass
    join pg_class t on t.oid = d.refobjid
    where s.relkind = 'S' and t.oid = any (v_tables)
  loop
    execute format('revoke all on sequence %s from %s', v_rel.rel, v_public_roles);
    if v_service_role then
      execute format('grant usage, select on sequence %s to service_role', v_rel.rel);
    end if;
  end loop;

  for v_fn in
    select p.oid::regprocedure from pg_proc p
    where p.pronamespace = v_schema::regnamespace and p.proname like 'gatehouse\_%' and p.prokind = 'f'
  loop
    -- Functions name tables and each other unqualified: resolve them in this schema
    -- only, never in one a caller put first on its search_path (pg_temp last).
    execute format('alter function %s set search_path = %I, pg_temp', v_fn, v_schema);
    execute format('revoke all on function %s from %s', v_fn, v_public_roles);
    if v_service_role then
      execute format('grant execute on function %s to service_role', v_fn);
    end if;
    v_functions := v_functions + 1;
  end loop;

  return jsonb_build_object('tables', cardinality(v_tables), 'functions', v_functions);
end $$;

select gatehouse_seal();
