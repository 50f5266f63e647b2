-- Observability: the request id on each job and execution, per-function
-- statistics kept current by the database itself, a registry of workers, and
-- views for people with psql. docs/observability.md describes them.

-- The X-Request-Id of the call that queued the work: log lines of the
-- request, the job and the run all carry it.
alter table executions add column request_id text;
alter table compile_jobs add column request_id text;

-- Per function and hour, what finished: counts by status and error type,
-- sums for averages, and a histogram of durations for percentiles.
-- `shard` spreads the rows over the writers (one per executor worker id), so
-- two executors never wait for each other's row lock.
-- Bucket i of `duration_histogram` counts durations d (ms) with
-- plat_duration_bounds()[i-1] <= d < plat_duration_bounds()[i] (from 0; the
-- last bucket is open-ended).
create table execution_rollups (
    function_id uuid not null,
    hour timestamptz not null,
    status execution_status not null,
    error_type text not null default '',
    shard smallint not null,
    executions bigint not null,
    duration_ms_sum bigint not null,
    queued_ms_sum bigint not null,
    duration_histogram bigint[] not null,
    primary key (function_id, hour, status, error_type, shard)
);
alter table execution_rollups set (fillfactor = 70);
create index execution_rollups_hour_idx on execution_rollups (hour);

-- Finished executions per minute, for "throughput over the last minute".
create table execution_throughput (
    minute timestamptz not null,
    shard smallint not null,
    finished bigint not null,
    primary key (minute, shard)
);

-- Upper bounds (exclusive, ms) of the histogram buckets: exact below 7 ms,
-- then about 25% wide. Rust reads the same list (common/src/stats.rs).
create function plat_duration_bounds() returns int[] language sql immutable parallel safe as $$
    select array[1,2,3,4,5,6,7,8,10,12,15,20,25,30,40,50,60,80,100,120,150,200,250,300,400,500,
                 600,800,1000,1200,1500,2000,2500,3000,4000,5000,6000,8000,10000,12000,15000,
                 20000,25000,30000,40000,50000,60000,80000,100000,120000,150000,200000,250000,300000]
$$;

-- The bucket (1-based) a duration falls in; past the last bound, one more.
create function plat_duration_bucket(ms integer) returns integer language sql immutable parallel safe as $$
    select coalesce((select min(i) from generate_subscripts(plat_duration_bounds(), 1) i
                     where coalesce(ms, 0) < (plat_duration_bounds())[i]),
                    cardinality(plat_duration_bounds()) + 1)
$$;

-- A full histogram from (bucket, count) pairs with distinct buckets.
create function plat_histogram(buckets integer[], counts bigint[]) returns bigint[] language sql immutable parallel safe as $$
    select array(select coalesce((select c from unnest(buckets, counts) as u (b, c) where u.b = i), 0)::bigint
                 from generate_series(1, cardinality(plat_duration_bounds()) + 1) i)
$$;

-- Every statement that finishes executions (results, cancellations, lost
-- workers) updates the rollups in the same transaction: one grouped upsert
-- per statement, whatever the path, so no path can forget it.
create function plat_roll_up_finished() returns trigger language plpgsql as $$
begin
    with f as (
        select n.function_id, date_trunc('hour', n.finished_at, 'UTC') as hour, n.status,
               coalesce(n.error_type, '') as error_type,
               (abs(hashtext(coalesce(n.worker_id, ''))) % 16)::smallint as shard,
               coalesce(n.duration_ms, 0) as duration_ms,
               greatest(0, (extract(epoch from (coalesce(n.started_at, n.finished_at) - n.created_at)) * 1000)::bigint) as queued_ms,
               plat_duration_bucket(n.duration_ms) as bucket
        from new_rows n join old_rows o on o.id = n.id
        where n.finished_at is not null and o.finished_at is null
    ), per_bucket as (
        select function_id, hour, status, error_type, shard, bucket,
               count(*) as executions, sum(duration_ms) as duration_ms, sum(queued_ms) as queued_ms
        from f group by 1, 2, 3, 4, 5, 6
    ), grouped as (
        select function_id, hour, status, error_type, shard,
               sum(executions)::bigint as executions, sum(duration_ms)::bigint as duration_ms,
               sum(queued_ms)::bigint as queued_ms,
               array_agg(bucket) as buckets, array_agg(executions) as counts
        from per_bucket group by 1, 2, 3, 4, 5
    )
    insert into execution_rollups as r
        (function_id, hour, status, error_type, shard, executions, duration_ms_sum, queued_ms_sum, duration_histogram)
    select function_id, hour, status, error_type, shard, executions, duration_ms, queued_ms,
           plat_histogram(buckets, counts)
    from grouped
    on conflict (function_id, hour, status, error_type, shard) do update
    set executions = r.executions + excluded.executions,
        duration_ms_sum = r.duration_ms_sum + excluded.duration_ms_sum,
        queued_ms_sum = r.queued_ms_sum + excluded.queued_ms_sum,
        duration_histogram = array(select a + b from unnest(r.duration_histogram, excluded.duration_histogram) as t (a, b));

    insert into execution_throughput as t (minute, shard, finished)
    select date_trunc('minute', n.finished_at), (abs(hashtext(coalesce(n.worker_id, ''))) % 16)::smallint, count(*)
    from new_rows n join old_rows o on o.id = n.id
    where n.finished_at is not null and o.finished_at is null
    group by 1, 2
    on conflict (minute, shard) do update set finished = t.finished + excluded.finished;
    return null;
end
$$;

create trigger executions_roll_up_finished
    after update on executions
    referencing old table as old_rows new table as new_rows
    for each statement execute function plat_roll_up_finished();

-- Executions already finished before this migration.
insert into execution_rollups
    (function_id, hour, status, error_type, shard, executions, duration_ms_sum, queued_ms_sum, duration_histogram)
select function_id, hour, status, error_type, 0, sum(n), sum(d), sum(q),
       plat_histogram(array_agg(bucket), array_agg(n))
from (
    select function_id, date_trunc('hour', finished_at, 'UTC') as hour, status, coalesce(error_type, '') as error_type,
           plat_duration_bucket(duration_ms) as bucket, count(*) as n, sum(coalesce(duration_ms, 0)) as d,
           sum(greatest(0, (extract(epoch from (coalesce(started_at, finished_at) - created_at)) * 1000)::bigint)) as q
    from executions where finished_at is not null
    group by 1, 2, 3, 4, 5
) x
group by function_id, hour, status, error_type;

-- Worker processes, as they report themselves (at start, then with every
-- heartbeat round). `GET /queues` lists those seen recently.
create table workers (
    id text primary key,
    kind text not null,
    host text not null,
    pid integer not null,
    started_at timestamptz not null default now(),
    last_seen_at timestamptz not null default now(),
    stopped_at timestamptz,
    jobs_done bigint not null default 0
);
create index workers_last_seen_idx on workers (last_seen_at desc);

-- For operators with psql. `failed` now counts the last hour (from the
-- rollups): counting every failed execution ever scanned the whole history.
drop view queue_overview;
create view queue_overview as
select 'compile' as queue,
       count(*) filter (where j.state = 'available' and j.run_at <= now()) as ready,
       count(*) filter (where j.state = 'available' and j.run_at > now()) as scheduled,
       count(*) filter (where j.state = 'running') as running,
       (select count(*) from function_versions v
        where v.status = 'FAILED' and v.updated_at > now() - interval '1 hour') as failed_last_hour,
       now() - min(j.run_at) filter (where j.state = 'available' and j.run_at <= now()) as oldest_ready_age,
       (select count(*) from function_versions v where v.compiled_at > now() - interval '1 minute') as done_last_minute
from compile_jobs j
union all
select 'execute',
       count(*) filter (where j.state = 'available' and j.run_at <= now()),
       count(*) filter (where j.state = 'available' and j.run_at > now()),
       count(*) filter (where j.state = 'running'),
       (select coalesce(sum(r.executions), 0) from execution_rollups r
        where r.status = 'FAILED' and r.hour >= date_trunc('hour', now() - interval '1 hour', 'UTC')),
       now() - min(j.run_at) filter (where j.state = 'available' and j.run_at <= now()),
       (select coalesce(sum(t.finished), 0) from execution_throughput t
        where t.minute >= date_trunc('minute', now() - interval '1 minute'))
from execution_jobs j;

-- Jobs whose lease ran out: their worker died or hangs; the next rescue
-- returns them to the queue (or fails them after max_attempts).
create view stuck_jobs as
select 'compile' as queue, id::text as job_id, function_id, attempt, worker_id,
       lease_expires_at, now() - lease_expires_at as expired_for
from compile_jobs where state = 'running' and lease_expires_at < now()
union all
select 'execute', id::text, function_id, attempt, worker_id, lease_expires_at, now() - lease_expires_at
from execution_jobs where state = 'running' and lease_expires_at < now();

-- The last 24 hours per function, from the rollups.
create view function_stats_24h as
select f.id as function_id, f.name,
       sum(r.executions) as executions,
       sum(r.executions) filter (where r.status = 'FAILED') as failed,
       round(100.0 * coalesce(sum(r.executions) filter (where r.status = 'FAILED'), 0)
             / nullif(sum(r.executions), 0), 2) as error_rate_pct,
       round(sum(r.duration_ms_sum)::numeric / nullif(sum(r.executions), 0), 2) as avg_duration_ms,
       round(sum(r.queued_ms_sum)::numeric / nullif(sum(r.executions), 0), 2) as avg_queued_ms
from execution_rollups r join functions f on f.id = r.function_id
where r.hour >= date_trunc('hour', now() - interval '24 hours', 'UTC')
group by f.id, f.name;

create view slowest_functions as
select * from function_stats_24h where executions > 0 order by avg_duration_ms desc nulls last;

create view error_rates as
select * from function_stats_24h where executions > 0 order by error_rate_pct desc nulls last;

-- Retention deletes old history by id range: execution ids are UUIDv7, whose
-- leading bits are the creation time, so the primary key orders them by age.
