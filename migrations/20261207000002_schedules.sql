-- Schedules: a function run at the ticks of a cron expression
-- (docs/triggers.md, "Schedules").
--
-- Every API process runs a scheduler loop. Each claims due schedules with
-- `for update skip locked` and, in one transaction per schedule, records
-- the tick in `schedule_fires`, queues the run and moves `next_fire_at`
-- past it. The fires' primary key is what makes a tick fire once however
-- many processes look at it, not a leader held in memory.
create table schedules (
    id uuid primary key,
    function_id uuid not null references functions (id) on delete cascade,
    -- 5 fields, or 6 with seconds first; checked by the API (croner)
    cron text not null,
    -- an IANA time zone name (chrono-tz), in which `cron` is read
    timezone text not null default 'UTC',
    -- the input of every run
    input jsonb not null default 'null',
    enabled boolean not null default true,
    -- what a tick found long past does: 'runLatest' runs the latest such
    -- tick once, 'skip' runs none of them
    missed_ticks text not null default 'runLatest'
        check (missed_ticks in ('runLatest', 'skip')),
    -- the next tick to fire; null while paused
    next_fire_at timestamptz,
    -- the runs are queued as this user (their quota and fair share); a
    -- schedule goes with its creator, like their API keys
    created_by uuid not null references users (id) on delete cascade,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    check (enabled or next_fire_at is null)
);
create index schedules_function on schedules (function_id, created_at, id);
-- The schedulers' claim and their "when is the next one due".
create index schedules_due on schedules (next_fire_at) where next_fire_at is not null;

-- One row per tick fired: the primary key refuses a second fire of a tick.
create table schedule_fires (
    schedule_id uuid not null references schedules (id) on delete cascade,
    scheduled_for timestamptz not null,
    -- 'queued' (execution_id is the run), or why nothing was queued:
    -- 'overQuota' (the creator had as many runs in flight as allowed),
    -- 'noReadyVersion' (no active READY version), 'creatorDisabled'
    outcome text not null
        check (outcome in ('queued', 'overQuota', 'noReadyVersion', 'creatorDisabled')),
    -- no foreign key: executions are deleted by retention, fires stay
    execution_id uuid,
    created_at timestamptz not null default now(),
    primary key (schedule_id, scheduled_for),
    check ((outcome = 'queued') = (execution_id is not null))
);
-- The schedulers prune fires older than the execution history's retention.
create index schedule_fires_created_at on schedule_fires (created_at);

grant select, insert, update, delete on schedules, schedule_fires to plat_api;
