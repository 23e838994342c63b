-- Per-token send limits.
--
-- An API token may carry a per-minute send limit (counted by the service, in Redis
-- when it has one) and a total send quota, counted here. As Unkey counts one credit
-- per verification, one accepted send request costs one unit of quota, whatever its
-- number of recipients. The quota is taken in the send's own transaction, after the
-- idempotency and recipient checks and by one conditional update of the token's
-- row: concurrent sends queue on that row and never overspend, a refused or failed
-- send (rolled back) takes nothing, and a replay returns before it.
alter table api_tokens add column if not exists sends_per_minute integer check (sends_per_minute > 0);
alter table api_tokens add column if not exists send_quota integer check (send_quota > 0);
alter table api_tokens add column if not exists send_quota_remaining integer check (send_quota_remaining >= 0);
alter table api_tokens drop constraint if exists api_tokens_send_quota_consistent;
alter table api_tokens add constraint api_tokens_send_quota_consistent
  check ((send_quota is null) = (send_quota_remaining is null) and send_quota_remaining <= send_quota);

create or replace function gatehouse_token_json(t api_tokens) returns jsonb
language sql stable as $$
  select jsonb_build_object(
    'id', t.id, 'userId', t.user_id, 'createdBy', t.created_by, 'name', t.name,
    'scopes', to_jsonb(t.scopes),
    'sendsPerMinute', t.sends_per_minute, 'sendQuota', t.send_quota, 'sendQuotaRemaining', t.send_quota_remaining,
    'expiresAt', gatehouse_iso(t.expires_at), 'revokedAt', gatehouse_iso(t.revoked_at),
    'lastUsedAt', gatehouse_iso(t.last_used_at), 'createdAt', gatehouse_iso(t.created_at))
$$;

-- One function with defaulted new parameters, as before: servers of the previous
-- version keep calling it by name.
drop function if exists gatehouse_token_create(text, text, text, text, timestamptz, text[]);
create or replace function gatehouse_token_create(
  p_id text, p_user_id text, p_created_by text, p_name text, p_expires_at timestamptz, p_scopes text[] default null,
  p_sends_per_minute integer default null, p_send_quota integer default null
) returns jsonb language plpgsql as $$
declare v api_tokens;
begin
  if not exists (select 1 from users where id = p_user_id and deleted_at is null) then
    return jsonb_build_object('error', 'user_not_found');
  end if;
  insert into api_tokens (id, user_id, created_by, name, expires_at, scopes, sends_per_minute, send_quota, send_quota_remaining)
  values (p_id, p_user_id, p_created_by, p_name, p_expires_at, p_scopes, p_sends_per_minute, p_send_quota, p_send_quota)
  returning * into v;
  return jsonb_build_object('token', gatehouse_token_json(v),
    'user', (select gatehouse_user_json(u) from users u where u.id = p_user_id));
end $$;

-- gatehouse_send as in the cheap-rows migration (one id per send, seqs in recipient
-- order), plus p_token_id: the sending API token, whose quota (if it has one) pays
-- for the send. Also returns {"error": "quota_exhausted", "sendQuota": n} and, for a
-- token with a quota, "sendQuotaRemaining" after this send (a replay answers the
-- first response's). A user being deleted is no longer a valid recipient.
drop function if exists gatehouse_send(text, text, boolean, text[], text, uuid, text, text);
create or replace function gatehouse_send(
  p_sender text, p_sender_org text, p_is_admin boolean, p_recipients text[],
  p_content text, p_template_id uuid, p_idempotency_key text, p_request_hash text,
  p_token_id text default null)
returns jsonb language plpgsql as $$
declare
  v_existing idempotency_keys;
  v_bad jsonb;
  v_body message_bodies;
  v_seqs jsonb;
  v_result jsonb;
  v_quota integer;
  v_remaining integer;
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
    select v_body.id, r from unnest(p_recipients) with ordinality as t(r, ord) order by ord
    returning seq)
  select coalesce(jsonb_agg(seq order by seq), '[]'::jsonb) into v_seqs from inserted;

  -- What a retry with the same key and body answers: its recipients are the same.
  v_result := jsonb_build_object('id', v_body.id, 'count', jsonb_array_length(v_seqs),
    'createdAt', gatehouse_iso(v_body.created_at));
  if v_quota is not null then
    v_result := v_result || jsonb_build_object('sendQuota', v_quota, 'sendQuotaRemaining', v_remaining);
  end if;
  if p_idempotency_key is not null then
    update idempotency_keys set response = v_result where caller_id = p_sender and key = p_idempotency_key;
  end if;
  return v_result || jsonb_build_object('seqs', v_seqs, 'replayed', false);
end $$;

create or replace function gatehouse_schema_version() returns jsonb
language sql immutable as $$ select jsonb_build_object('version', '20261122012000') $$;

-- Nothing of this migration is reachable by anon or authenticated on Supabase.
select gatehouse_seal();
