-- Retries and dead letters for runs (issue 26, docs/triggers.md "Retries and
-- dead letters").
--
-- A version whose `executionConfig.retry` is set runs again after a
-- HANDLER_ERROR or a TIMEOUT while it has attempts left: its job goes back
-- to the queue (it stays in flight, so the owner's count, its fairness stamp
-- and any maxConcurrency slot stay as they are) and the failed run is kept
-- in `execution_attempts`. None of this touches the result write of a run
-- that is not retried: that write and its triggers are unchanged.

-- How many runs of this job ended in a retried failure: the next run is
-- attempt `retries + 1` (`PLAT_EXECUTION_ATTEMPT`). Not indexed: written
-- only when a run is retried.
alter table execution_jobs add column retries integer not null default 0;

-- One row per run that failed and was run again. The last run of an
-- execution is not copied here: it is the execution row itself, so a result
-- that is not retried writes nothing more than before.
create table execution_attempts (
    execution_id uuid not null references executions (id) on delete cascade,
    -- 1 for the first run (what PLAT_EXECUTION_ATTEMPT said).
    attempt integer not null,
    error_type text not null,
    error_message text not null,
    logs text not null,
    logs_truncated boolean not null,
    duration_ms integer not null,
    worker_id text,
    started_at timestamptz,
    finished_at timestamptz not null,
    -- When the next run was due (the backoff).
    retry_at timestamptz not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (execution_id, attempt),
    constraint execution_attempts_attempt check (attempt >= 1)
);

-- A dead letter: an execution of a version with a retry policy that failed
-- in a way a retry is for (HANDLER_ERROR, TIMEOUT), so after its last
-- attempt. Marked by the trigger that already records every failure, so the
-- result write stays what it was. `requeued_as` names the execution an admin
-- re-queued it as; a re-queued dead letter leaves the listing.
alter table unsuccessful_executions
    add column dead_letter boolean not null default false,
    add column requeued_as uuid;

-- GET /executions?deadLetter=true, newest first.
create index unsuccessful_executions_dead_letter_idx
    on unsuccessful_executions (created_at desc, id desc)
    where dead_letter and requeued_as is null;

-- As before (20261128000001), plus the dead-letter flag. The version's
-- config is read only for the statement's failures of the retried kinds.
create or replace function plat_record_unsuccessful() returns trigger language plpgsql as $$
begin
    insert into unsuccessful_executions (id, function_id, status, created_at, finished_at, dead_letter)
    select n.id, n.function_id, n.status, n.created_at, n.finished_at,
           n.status = 'FAILED' and n.error_type in ('HANDLER_ERROR', 'TIMEOUT')
           and exists (select from function_versions v
                       where v.function_id = n.function_id and v.version = n.function_version
                         and v.execution_config ? 'retry')
    from new_rows n
    where n.status in ('FAILED', 'CANCELLED')
    on conflict (id) do nothing;
    return null;
end
$$;

grant select on execution_attempts to plat_api;
grant update (requeued_as) on unsuccessful_executions to plat_api;
grant insert on execution_attempts to plat_executor;
