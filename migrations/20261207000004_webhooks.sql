-- Completion webhooks (docs/triggers.md, "Completion webhooks"): when an
-- execution with a webhook finishes, by whatever path (its result, a cancel,
-- its worker lost for good), a delivery row is written in the same
-- transaction (an outbox), and a delivery worker POSTs it, signed.

-- The function's `webhookUrl`, and its signing secret sealed with the
-- operator's key (plat_common::secrets, the function's id as associated
-- data). The secret outlives a cleared URL: per-call callbacks use it too.
alter table functions
    add column webhook_url text,
    add column webhook_secret bytea;

-- Where to POST the finished record, fixed when the execution is queued: the
-- function's `webhookUrl` and the call's `callbackUrl`. Null for the common
-- execution without any, so the trigger below is never even called for it
-- (its WHEN reads only the row). No index: results stay HOT updates.
alter table executions add column webhook_urls text[];

create type webhook_delivery_status as enum ('PENDING', 'DELIVERED', 'DEAD_LETTERED');

-- The outbox. No foreign keys: the row is written by the statement that
-- finishes an execution, which must never fail for its sake (the function
-- may have been deleted meanwhile; the worker then dead-letters it).
create table webhook_deliveries (
    -- Also the `webhook-id` header (as `msg_` and the hex digits): the same
    -- on every attempt, so receivers can drop duplicates.
    id uuid primary key,
    execution_id uuid not null,
    function_id uuid not null,
    url text not null,
    status webhook_delivery_status not null default 'PENDING',
    -- Attempts begun, the one in progress included.
    attempts integer not null default 0,
    -- When a PENDING delivery may be claimed: its next attempt after a
    -- failure, or the end of the lease of the attempt in progress (a worker
    -- killed mid-delivery leaves it to be claimed again then).
    next_attempt_at timestamptz not null default now(),
    -- The claim's token: only the worker holding it records the outcome.
    lease_token uuid,
    last_status_code integer,
    last_error text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    finished_at timestamptz,
    constraint webhook_deliveries_finished_when_not_pending
        check ((status = 'PENDING') = (finished_at is null))
);

-- The claim's walk, in the order it takes.
create index webhook_deliveries_due on webhook_deliveries (next_attempt_at)
    where status = 'PENDING';
-- GET /functions/{function}/webhooks/deliveries, newest first.
create index webhook_deliveries_of_function on webhook_deliveries (function_id, created_at desc, id desc);

-- Every attempt, as it went: an attempt without `finished_at` was lost with
-- its worker.
create table webhook_delivery_attempts (
    delivery_id uuid not null references webhook_deliveries (id) on delete cascade,
    attempt integer not null,
    started_at timestamptz not null default now(),
    finished_at timestamptz,
    duration_ms integer,
    status_code integer,
    error text,
    worker_id text,
    primary key (delivery_id, attempt)
);

create function plat_queue_webhook_deliveries() returns trigger
language plpgsql as $$
begin
    insert into webhook_deliveries (id, execution_id, function_id, url)
    select gen_random_uuid(), new.id, new.function_id, url
    from unnest(new.webhook_urls) as url;
    perform pg_notify('plat_webhook_deliveries', '');
    return null;
end
$$;

create trigger executions_queue_webhook_deliveries
    after update of status on executions
    for each row
    when (new.webhook_urls is not null
          and old.status in ('QUEUED', 'RUNNING')
          and new.status in ('SUCCEEDED', 'FAILED', 'CANCELLED'))
    execute function plat_queue_webhook_deliveries();

-- The executor finishes executions, so its statements write the outbox; the
-- API cancels them, reads and delivers.
grant insert on webhook_deliveries to plat_executor;
grant select, insert, update, delete on webhook_deliveries, webhook_delivery_attempts to plat_api;
