-- Cheap per-recipient rows.
--
-- A send stores one body and one row per recipient. Each row used to carry its own
-- random uuid (with a unique index) and two foreign keys, checked row by row: about
-- two thirds of the cost of a 10,000-recipient send. Now:
--
-- - a message's id, as clients see it, is its send's id (the body's id): one id per
--   send, unique per recipient, the same in every recipient's frame. Rows written
--   before this migration keep their own ids (`messages.id`, still unique); new rows
--   leave it null and their id is `body_id`. Acks name a message by that id.
-- - the foreign keys go; what they did is kept by the send (it checks every
--   recipient before it writes) and by two statement triggers (below): deleting a
--   user or a body still deletes its messages.

alter table messages alter column id drop default, alter column id drop not null;
-- Unique among the rows that have one; new rows add no entry.
alter table messages drop constraint if exists messages_id_key;
create unique index if not exists messages_legacy_id_idx on messages (id) where id is not null;

-- A message by send and recipient: acks, and the deletion of a body's messages.
create index if not exists messages_body_recipient_idx on messages (body_id, recipient_id);

alter table messages drop constraint if exists messages_body_id_fkey;
alter table messages drop constraint if exists messages_recipient_id_fkey;

-- A removed user's messages go with them, as the foreign key's cascade did. The lock
-- is the one every send holds shared (gatehouse_send): a send that checked this user
-- before the delete commits its rows first, and they are deleted here; a later send
-- finds the user gone and stores nothing.
create or replace function gatehouse_users_deleted() returns trigger
language plpgsql as $$
begin
  perform pg_advisory_xact_lock(727275);
  delete from messages m using gone g where m.recipient_id = g.id;
  return null;
end $$;
drop trigger if exists gatehouse_users_deleted on users;
create trigger gatehouse_users_deleted after delete on users
  referencing old table as gone for each statement execute function gatehouse_users_deleted();

-- A removed body's messages go with it (retention deletes bodies in batches).
create or replace function gatehouse_bodies_deleted() returns trigger
language plpgsql as $$
begin
  delete from messages m using gone g where m.body_id = g.id;
  return null;
end $$;
drop trigger if exists gatehouse_bodies_deleted on message_bodies;
create trigger gatehouse_bodies_deleted after delete on message_bodies
  referencing old table as gone for each statement execute function gatehouse_bodies_deleted();

create or replace function gatehouse_message_json(m messages, b message_bodies) returns jsonb
language sql stable as $$
  select jsonb_build_object('id', coalesce(m.id, m.body_id), 'seq', m.seq, 'senderId', b.sender_id, 'content', b.content,
    'templateId', b.template_id, 'createdAt', gatehouse_iso(b.created_at), 'acked', m.acked_at is not null)
$$;

-- Stores one send atomically: idempotency check, recipient check, one body row and
-- one batched insert of every recipient's message. Returns
--   {"id", "count", "createdAt", "seqs": [...], "replayed": false}
-- where id is every message's id and seqs the messages' seqs in the order of
-- p_recipients (distinct ids), or, for a retry of an Idempotency-Key, the first
-- response with "replayed": true and no seqs (before this migration it held
-- "messages": [{id, recipientId, seq}]), or {"error": "invalid_recipients", "ids": […]}
-- / {"error": "idempotency_mismatch"}.
create or replace function gatehouse_send(
  p_sender text, p_sender_org text, p_is_admin boolean, p_recipients text[],
  p_content text, p_template_id uuid, p_idempotency_key text, p_request_hash text)
returns jsonb language plpgsql as $$
declare
  v_existing idempotency_keys;
  v_bad jsonb;
  v_body message_bodies;
  v_seqs jsonb;
  v_result jsonb;
begin
  -- Readers take this lock exclusively to learn that no send is in flight (gatehouse_inbox),
  -- and a user's deletion to wait for the sends that found the user (gatehouse_users_deleted).
  -- Held from before this transaction's first write until it commits: a transaction that
  -- wrote earlier could commit rows with an xid older than a cursor already handed out.
  if pg_current_xact_id_if_assigned() is not null then
    raise exception 'gatehouse_send must be the first write of its transaction';
  end if;
  perform pg_advisory_xact_lock_shared(727275);

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

  -- Every recipient is checked here, before anything is written: no foreign key checks each row.
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

  -- Rows are inserted in the order of p_recipients, and one statement draws its seqs in
  -- increasing order: ordered by seq, they are in the order of p_recipients.
  with inserted as (
    insert into messages (body_id, recipient_id)
    select v_body.id, r from unnest(p_recipients) with ordinality as t(r, ord) order by ord
    returning seq)
  select coalesce(jsonb_agg(seq order by seq), '[]'::jsonb) into v_seqs from inserted;

  -- What a retry with the same key and body answers: its recipients are the same.
  v_result := jsonb_build_object('id', v_body.id, 'count', jsonb_array_length(v_seqs),
    'createdAt', gatehouse_iso(v_body.created_at));
  if p_idempotency_key is not null then
    update idempotency_keys set response = v_result where caller_id = p_sender and key = p_idempotency_key;
  end if;
  return v_result || jsonb_build_object('seqs', v_seqs, 'replayed', false);
end $$;

-- Acknowledgements of many recipients at once, as parallel arrays (recipient, message id):
-- the hub writes every socket's acks of a moment in one statement. A message is only
-- acknowledged by its own recipient. An id is a send's (body_id), or a message's own id
-- for rows written before 20261122010000.
create or replace function gatehouse_ack(p_recipients text[], p_ids uuid[]) returns jsonb
language sql as $$
  with a as (
    select * from unnest(p_recipients, p_ids) as a (recipient_id, id)),
  by_send as (
    update messages m set acked_at = now()
    from a
    where m.body_id = a.id and m.recipient_id = a.recipient_id and m.id is null and m.acked_at is null
    returning 1),
  by_own_id as (
    update messages m set acked_at = now()
    from a
    where m.id = a.id and m.recipient_id = a.recipient_id and m.acked_at is null
    returning 1)
  select jsonb_build_object('acked', (select count(*) from by_send) + (select count(*) from by_own_id))
$$;

create or replace function gatehouse_schema_version() returns jsonb
language sql immutable as $$ select jsonb_build_object('version', '20261122010000') $$;

select gatehouse_seal();
