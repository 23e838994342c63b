-- Inbox order that follows commit order.
--
-- A message's seq is taken when it is inserted but the row becomes visible when its
-- transaction commits, so sends commit out of seq order and a reader asking for
-- `seq > cursor` could pass over a message that committed late. Each row now records
-- the id of the transaction that wrote it (xid8, never wraps). The inbox is ordered by
-- (xact, seq) and hands out only rows that can no longer be overtaken:
--
-- - when no send is in flight in this database (the reader gets the advisory lock every
--   send holds shared), every row is final, and any later send gets a larger xid;
-- - otherwise, rows whose xact is below the oldest transaction still running anywhere
--   on the server (pg_snapshot_xmin): every transaction below it has finished, and
--   every later commit has a larger xid.
--
-- Rows written before this migration keep xact 0 and their seq order.

alter table messages add column if not exists xact xid8 not null default '0';
alter table messages alter column xact set default pg_current_xact_id();

-- The inbox's index, reshaped rather than doubled: one entry per message either way.
drop index if exists messages_recipient_idx;
create index if not exists messages_recipient_xact_idx on messages (recipient_id, xact, seq);

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
  -- Readers take this lock exclusively to learn that no send is in flight (gatehouse_inbox).
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

drop function if exists gatehouse_inbox(text, bigint, integer);

-- Every message after a cursor (xact, seq), acknowledged or not: the HTTP inbox.
-- p_after_xact null with p_after_seq > 0 is a cursor from before this migration (seq
-- only): it resumes at the oldest transaction that wrote one of the recipient's messages
-- after that seq, so it may repeat messages but skips none it would have shown.
-- Volatile: each statement must read with a snapshot taken after the lock.
create or replace function gatehouse_inbox(p_recipient text, p_after_xact xid8, p_after_seq bigint, p_limit integer) returns jsonb
language plpgsql volatile as $$
declare
  v_after_xact xid8 := p_after_xact;
  v_after_seq bigint := coalesce(p_after_seq, 0);
  v_fence xid8;
  v_result jsonb;
begin
  if current_setting('transaction_isolation') <> 'read committed' or not pg_try_advisory_xact_lock(727275) then
    v_fence := pg_snapshot_xmin(pg_current_snapshot());
  end if;

  if v_after_xact is null and v_after_seq > 0 then
    select min(m.xact) into v_after_xact from messages m where m.recipient_id = p_recipient and m.seq > v_after_seq;
    if v_after_xact is null then return '[]'::jsonb; end if;
    if v_after_xact <> '0'::xid8 then v_after_seq := 0; end if;
  end if;
  v_after_xact := coalesce(v_after_xact, '0'::xid8);

  select coalesce(jsonb_agg(j order by xact, seq), '[]'::jsonb) into v_result from (
    select m.xact, m.seq, gatehouse_message_json(m, b) || jsonb_build_object('xact', m.xact::text) as j
    from messages m join message_bodies b on b.id = m.body_id
    where m.recipient_id = p_recipient and (m.xact, m.seq) > (v_after_xact, v_after_seq)
      and (v_fence is null or m.xact < v_fence)
    order by m.xact, m.seq limit p_limit) s;
  return v_result;
end $$;

select gatehouse_seal();
