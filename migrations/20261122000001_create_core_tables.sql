-- Plat's core schema: functions and their versions, the two hot queue tables,
-- and the execution history. See docs/architecture.md for the job lifecycle.
--
-- The queue tables (compile_jobs, execution_jobs) only ever hold claimable or
-- running jobs: a job row is deleted in the same statement that writes its
-- terminal result into the history table, so the claim scans a tiny table
-- whatever the size of the history.

create type version_status as enum ('PENDING', 'COMPILING', 'READY', 'FAILED');
create type execution_status as enum ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED');
create type job_state as enum ('available', 'running');

create table functions (
    id uuid primary key,
    name text not null,
    language text not null,
    description text,
    tags text[] not null default '{}',
    -- the newest version (what GET shows as `version` and `status`)
    latest_version integer not null default 1,
    -- the newest READY version: what executions run
    active_version integer,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint functions_name_key unique (name)
);
create index functions_created_at_idx on functions (created_at desc, id desc);

create table function_versions (
    function_id uuid not null references functions (id) on delete cascade,
    version integer not null,
    source text not null,
    -- {timeoutMs, memoryLimitMb, environmentVariables}, always fully populated
    execution_config jsonb not null,
    status version_status not null default 'PENDING',
    compile_error text,
    -- the wasm32-wasip1 module, and its sha256 (hex) so executors can key caches
    module bytea,
    module_sha256 text,
    compile_duration_ms integer,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    compiled_at timestamptz,
    primary key (function_id, version),
    constraint function_versions_ready_has_module
        check ((status = 'READY') = (module is not null)),
    constraint function_versions_failed_has_error
        check ((status = 'FAILED') = (compile_error is not null))
);

-- Hot queue: compile jobs. One row per (function, version) still to be built.
create table compile_jobs (
    id bigint generated always as identity primary key,
    function_id uuid not null,
    version integer not null,
    state job_state not null default 'available',
    attempt integer not null default 0,
    max_attempts integer not null default 5,
    run_at timestamptz not null default now(),
    -- the lease: who holds the job, with which token, until when
    lease_token uuid,
    lease_expires_at timestamptz,
    worker_id text,
    last_error text,
    created_at timestamptz not null default now(),
    foreign key (function_id, version) references function_versions (function_id, version) on delete cascade,
    constraint compile_jobs_lease_when_running
        check ((state = 'running') = (lease_token is not null and lease_expires_at is not null))
);
-- Matches the claim's WHERE and ORDER BY exactly.
create index compile_jobs_claim_idx on compile_jobs (run_at, id) where state = 'available';
create index compile_jobs_lease_idx on compile_jobs (lease_expires_at) where state = 'running';

-- History: one row per execution, forever (until retention is added).
-- function_id deliberately has no foreign key: deleting a function keeps its
-- execution history readable through GET /executions/{id}.
create table executions (
    id uuid primary key,
    function_id uuid not null,
    function_version integer not null,
    status execution_status not null default 'QUEUED',
    input jsonb not null,
    output jsonb,
    error_type text,
    error_message text,
    logs text not null default '',
    logs_truncated boolean not null default false,
    duration_ms integer,
    attempts integer not null default 0,
    worker_id text,
    created_at timestamptz not null default now(),
    started_at timestamptz,
    finished_at timestamptz,
    constraint executions_terminal_has_finished_at
        check ((status in ('SUCCEEDED', 'FAILED', 'CANCELLED')) = (finished_at is not null)),
    constraint executions_failed_has_error
        check ((status = 'FAILED') = (error_type is not null))
);
create index executions_function_idx on executions (function_id, created_at desc, id desc);
create index executions_function_status_idx on executions (function_id, status, created_at desc, id desc);

-- Hot queue: execution jobs. The job id is the execution id.
create table execution_jobs (
    id uuid primary key references executions (id) on delete cascade,
    function_id uuid not null,
    version integer not null,
    state job_state not null default 'available',
    attempt integer not null default 0,
    max_attempts integer not null default 5,
    run_at timestamptz not null default now(),
    lease_token uuid,
    lease_expires_at timestamptz,
    worker_id text,
    last_error text,
    created_at timestamptz not null default now(),
    constraint execution_jobs_lease_when_running
        check ((state = 'running') = (lease_token is not null and lease_expires_at is not null))
);
create index execution_jobs_claim_idx on execution_jobs (run_at, created_at) where state = 'available';
create index execution_jobs_lease_idx on execution_jobs (lease_expires_at) where state = 'running';
create index execution_jobs_function_idx on execution_jobs (function_id);

-- The queue tables churn constantly: vacuum them early and leave room on each
-- page for HOT updates of the claim.
alter table compile_jobs set (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 0);
alter table execution_jobs set (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 0);

-- For operators: one row per queue. Failed counts come from the history
-- tables, since finished jobs leave the queue tables.
create view queue_overview as
select 'compile' as queue,
       count(*) filter (where j.state = 'available' and j.run_at <= now()) as ready,
       count(*) filter (where j.state = 'available' and j.run_at > now()) as scheduled,
       count(*) filter (where j.state = 'running') as running,
       (select count(*) from function_versions v where v.status = 'FAILED') as failed,
       now() - min(j.run_at) filter (where j.state = 'available' and j.run_at <= now()) as oldest_ready_age
from compile_jobs j
union all
select 'execute',
       count(*) filter (where j.state = 'available' and j.run_at <= now()),
       count(*) filter (where j.state = 'available' and j.run_at > now()),
       count(*) filter (where j.state = 'running'),
       (select count(*) from executions e where e.status = 'FAILED'),
       now() - min(j.run_at) filter (where j.state = 'available' and j.run_at <= now())
from execution_jobs j;
