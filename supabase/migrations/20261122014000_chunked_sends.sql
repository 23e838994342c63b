-- Large sends written in several transactions ("chunks").
--
-- A send to many recipients was one transaction: its first frame could leave only once
-- every row had committed. Now the service may write it in chunks and deliver each
-- chunk as soon as it commits, while the next one is written:
--
-- - gatehouse_send, given p_first_chunk, decides the whole send as before (idempotency
--   claim, every recipient checked, quota, body) but writes only the first p_first_chunk
--   rows; it answers "more": true when rows remain to be written;
-- - gatehouse_send_more writes a further chunk for the same body, skipping recipients
--   deleted meanwhile and rows that already exist (so writing a chunk twice is harmless);
-- - gatehouse_send_finish records the response of a chunked send with an
--   Idempotency-Key, or gives up its claim after a failure.
--
-- A chunked send with an Idempotency-Key is "in progress" until finished: its key row
-- holds the send so far (`pending`) and a lease, renewed by every chunk. A retry while
-- the lease runs answers {"error": "in_progress"}; a retry after it ran out (the
-- process writing it died) takes the send over and writes the missing rows.
alter table idempotency_keys add column if not exists pending jsonb;
alter table idempotency_keys add column if not exists lease_until timestamptz;
-- Who holds the lease: a takeover draws a new claim, and the writer it replaced learns it.
alter table idempotency_keys add column if not exists claim uuid;
-- Users being deleted, a handful at any time: a later chunk looks its recipients up
-- here, not in the whole users table (the first transaction checked they all exist).
create index if not exists users_being_deleted_idx on users (id) where deleted_at is not null;

-- gatehouse_send as in the token-limits migration, plus:
-- - p_first_chunk: write at most this many rows now (null: all of them, as before);
--   with more recipients, the answer carries "more": true and the rest is written by
--   gatehouse_send_more; the send's body, id and quota unit are taken here, once;
-- - p_lease_seconds: how long a chunked send's claim of its Idempotency-Key holds;
-- - a retry of a chunked send still in progress answers {"error": "in_progress",
--   "retryAfter": seconds}, or, once the lease ran out, takes the send over: the
--   send so far with "more": true, "resumed": true and no seqs (every row is then
--   written by gatehouse_send_more, those that exist skipped);
-- - a chunked send with a key answers its "claim", for gatehouse_send_more.
drop function if exists gatehouse_send(text, text, boolean, text[], text, uuid, text, text, text);
create or replace function gatehouse_send(
  p_sender text, p_sender_org text, p_is_admin boolean, p_recipients text[],
  p_content text, p_template_id uuid, p_idempotency_key text, p_request_hash text,
  p_token_id text default null, p_first_chunk integer default null, p_lease_seconds integer default 30)
returns jsonb language plpgsql as $$
declare
  v_existing idempotency_keys;
  v_bad jsonb;
  v_body message_bodies;
  v_seqs jsonb;
  v_result jsonb;
  v_quota integer;
  v_remaining integer;
  v_more boolean := p_first_chunk is not null and cardinality(p_recipients) > p_first_chunk;
  v_claim uuid := gen_random_uuid();
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
    -- The insert doubles as a lock: a concurrent retry waits here for the first transaction to finish.
    insert into idempotency_keys (caller_id, key, request_hash)
    values (p_sender, p_idempotency_key, p_request_hash)
    on conflict do nothing;
    if not found then
      -- For update: of two retries finding a stale claim, one takes it over and the other sees the new lease.
      select * into v_existing from idempotency_keys where caller_id = p_sender and key = p_idempotency_key for update;
      if v_existing.request_hash <> p_request_hash then
        return jsonb_build_object('error', 'idempotency_mismatch');
      end if;
      if v_existing.response is not null or v_existing.pending is null then
        return v_existing.response || jsonb_build_object('replayed', true);
      end if;
      if v_existing.lease_until > now() then
        return jsonb_build_object('error', 'in_progress',
          'retryAfter', greatest(1, ceil(extract(epoch from v_existing.lease_until - now()))::integer));
      end if;
      update idempotency_keys set lease_until = now() + make_interval(secs => p_lease_seconds), claim = v_claim
       where caller_id = p_sender and key = p_idempotency_key;
      return v_existing.pending || jsonb_build_object('seqs', '[]'::jsonb, 'replayed', false, 'more', true, 'resumed', true, 'claim', v_claim);
    end if;
  end if;

  -- Every recipient is checked here, before anything is written: no foreign key checks each row.
  select coalesce(jsonb_agg(r order by ord), '[]'::jsonb) into v_bad
  from unnest(p_recipients) with ordinality as t(r, ord)
  where not exists (
    select 1 from users u
    where u.id = t.r and u.deleted_at is null and (p_is_admin or u.id = p_sender or (p_sender_org is not null and u.organization_id = p_sender_org)));
  if jsonb_array_length(v_bad) > 0 then
    if p_idempotency_key is not null then
      delete from idempotency_keys where caller_id = p_sender and key = p_idempotency_key;
    end if;
    return jsonb_build_object('error', 'invalid_recipients', 'ids', v_bad);
  end if;

  -- One unit of the token's quota. Concurrent sends wait on the row, and each sees
  -- the count the one before it left, so exactly send_quota of them pass.
  if p_token_id is not null then
    select send_quota into v_quota from api_tokens where id = p_token_id;
    if v_quota is not null then
      update api_tokens set send_quota_remaining = send_quota_remaining - 1
       where id = p_token_id and send_quota_remaining >= 1
      returning send_quota_remaining into v_remaining;
      if v_remaining is null then
        if p_idempotency_key is not null then
          delete from idempotency_keys where caller_id = p_sender and key = p_idempotency_key;
        end if;
        return jsonb_build_object('error', 'quota_exhausted', 'sendQuota', v_quota);
      end if;
    end if;
  end if;

  insert into message_bodies (sender_id, content, template_id)
  values (p_sender, p_content, p_template_id)
  returning * into v_body;

  -- Rows are inserted in the order of p_recipients, and one statement draws its seqs in
  -- increasing order: ordered by seq, they are in the order of p_recipients.
  with inserted as (
    insert into messages (body_id, recipient_id)
    select v_body.id, r from unnest(p_recipients) with ordinality as t(r, ord)
    where not v_more or ord <= p_first_chunk
    order by ord
    returning seq)
  select coalesce(jsonb_agg(seq order by seq), '[]'::jsonb) into v_seqs from inserted;

  -- What a retry with the same key and body answers: its recipients are the same.
  v_result := jsonb_build_object('id', v_body.id, 'count', cardinality(p_recipients),
    'createdAt', gatehouse_iso(v_body.created_at));
  if v_quota is not null then
    v_result := v_result || jsonb_build_object('sendQuota', v_quota, 'sendQuotaRemaining', v_remaining);
  end if;
  if p_idempotency_key is not null then
    if v_more then
      update idempotency_keys set pending = v_result, lease_until = now() + make_interval(secs => p_lease_seconds), claim = v_claim
       where caller_id = p_sender and key = p_idempotency_key;
    else
      update idempotency_keys set response = v_result where caller_id = p_sender and key = p_idempotency_key;
    end if;
  end if;
  return v_result || jsonb_build_object('seqs', v_seqs, 'replayed', false, 'more', v_more,
    'claim', case when v_more and p_idempotency_key is not null then v_claim end);
end $$;

-- A further chunk of a send: rows for those of p_recipients that are still users, in
-- the order of p_recipients. Returns
--   {"recipients": [...], "seqs": [...], "skipped": [...]}
-- the rows written (seqs in recipient order) and the recipients deleted since the
-- send was accepted (being deleted: a user whose deletion was also fully pruned within
-- the send is not seen, and their rows go with retention), who get nothing. Rows that already exist for p_body_id are
-- skipped when some may: p_resume (a taken-over send), or when the send's
-- Idempotency-Key is no longer held by p_claim (another process took it over). A
-- send writing alone skips that look-up, a third of a chunk's cost. With a key, its
-- row is locked first: two processes writing one send take turns.
create or replace function gatehouse_send_more(
  p_body_id uuid, p_recipients text[], p_sender text, p_idempotency_key text default null, p_lease_seconds integer default 30,
  p_claim uuid default null, p_resume boolean default false)
returns jsonb language plpgsql as $$
declare
  v_result jsonb;
  v_claim uuid;
  v_probe boolean := p_resume;
begin
  -- The lock of gatehouse_send, for the same reasons: this is a send's write too.
  if pg_current_xact_id_if_assigned() is not null then
    raise exception 'gatehouse_send_more must be the first write of its transaction';
  end if;
  perform pg_advisory_xact_lock_shared(727275);

  if p_idempotency_key is not null then
    select claim into v_claim from idempotency_keys
     where caller_id = p_sender and key = p_idempotency_key and response is null for update;
    if v_claim is not distinct from p_claim and v_claim is not null then
      update idempotency_keys set lease_until = now() + make_interval(secs => p_lease_seconds)
       where caller_id = p_sender and key = p_idempotency_key;
    else
      v_probe := true;
    end if;
  end if;

  with wanted as materialized (
    select t.r, t.ord,
      not exists (select 1 from users u where u.id = t.r and u.deleted_at is not null) as present,
      case when v_probe then exists (select 1 from messages m where m.body_id = p_body_id and m.recipient_id = t.r) else false end as written
    from unnest(p_recipients) with ordinality as t(r, ord)),
  inserted as (
    insert into messages (body_id, recipient_id)
    select p_body_id, r from wanted where present and not written order by ord
    returning recipient_id, seq)
  select jsonb_build_object(
    'recipients', (select coalesce(jsonb_agg(recipient_id order by seq), '[]'::jsonb) from inserted),
    'seqs', (select coalesce(jsonb_agg(seq order by seq), '[]'::jsonb) from inserted),
    'skipped', (select coalesce(jsonb_agg(r order by ord), '[]'::jsonb) from wanted where not present and not written))
  into v_result;
  return v_result;
end $$;

-- Ends a chunked send's claim of its Idempotency-Key: with p_response, the send is
-- complete and later retries replay it; with null, the send failed part way and the
-- next retry may take it over at once.
create or replace function gatehouse_send_finish(p_sender text, p_idempotency_key text, p_response jsonb)
returns jsonb language plpgsql as $$
begin
  if p_response is null then
    update idempotency_keys set lease_until = now() - interval '1 second'
     where caller_id = p_sender and key = p_idempotency_key and response is null;
  else
    update idempotency_keys set response = p_response, pending = null, lease_until = null, claim = null
     where caller_id = p_sender and key = p_idempotency_key;
  end if;
  return jsonb_build_object('finished', found);
end $$;

create or replace function gatehouse_schema_version() returns jsonb
language sql immutable as $$ select jsonb_build_object('version', '20261122014000') $$;

-- Nothing of this migration is reachable by anon or authenticated on Supabase.
select gatehouse_seal();
