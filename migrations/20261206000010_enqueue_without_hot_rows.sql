-- Enqueues and results without a row that every one of them takes
-- (docs/architecture.md, "Fairness and quotas", "What it costs").
--
-- Until now each enqueue updated its owner's `queue_owners` row (the queued
-- count) and its flow's `queue_flows` row (the flow's clock) and held both
-- until its commit, and each result statement updated the same owner row:
-- 32 concurrent callers of one owner took turns on it, one commit at a
-- time (a WAL flush each), and two executors' result writers waited for
-- each other on it. Now:
--
-- * The count of an owner's QUEUED + RUNNING runs is the sum of a few rows
--   of `queue_owner_counts`, one per shard. Statements of different
--   connections mostly use different shards (`plat_count_shard`), so
--   enqueues of an owner without a quota and the results of different
--   executors no longer wait for each other. Enqueues under a quota add to
--   shard 0, under its lock, after reading the other shards: results only
--   take from those, so a stale read can only over-count, and the quota is
--   never exceeded.
-- * A flow's clock is kept per lane (`queue_flows.lane`, the same shard
--   number), so concurrent enqueues of one flow from different connections
--   no longer take turns. A lane's runs are spaced by the flow's step times
--   its busy lanes, so all lanes together take the flow's part, not more;
--   a lane that was idle starts at the flow's front, behind its other
--   lanes' runs.
-- * The queue's virtual time is no longer found by walking the claim index
--   from its start, which crosses every entry of the runs claimed since the
--   last vacuum (1-6 ms per statement in the middle of a 200,000-run
--   drain, paid by every enqueue and every claim). Claims keep
--   `queue_clock` at the smallest stamp of their latest claim, enqueues
--   look for the front from there, and executors start their claims'
--   scans near where their previous claims were (docs/architecture.md,
--   "Where a scan starts").

create table queue_owner_counts (
    owner_id uuid not null,
    shard smallint not null,
    -- What statements using this shard added (runs queued) or took off (runs
    -- that left the queue): only the sum over an owner's shards means
    -- anything, and a shard can be negative.
    n bigint not null,
    updated_at timestamptz not null default now(),
    primary key (owner_id, shard)
);
-- Updated on every enqueue and result: leave room for HOT updates.
alter table queue_owner_counts set (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 0);

insert into queue_owner_counts (owner_id, shard, n)
select owner_id, 0, in_flight from queue_owners where in_flight <> 0;
-- queue_owners keeps the owners' weights, which an operator sets.
alter table queue_owners drop column in_flight;

-- QUEUED + RUNNING executions per owner, for operators and tests.
create view queue_in_flight as
select owner_id, sum(n)::bigint as in_flight from queue_owner_counts group by owner_id;

-- The shard (and flow lane) of this connection's statements, 1 to 16.
-- Shard 0 is the quota's.
create function plat_count_shard() returns smallint language sql stable as $$
    select (1 + pg_backend_pid() % 16)::smallint
$$;

alter table queue_flows add column lane smallint not null default 0;
alter table queue_flows drop constraint queue_flows_pkey;
alter table queue_flows add primary key (owner_id, function_id, lane);

-- As before, but each statement takes its runs off the owners' counts in
-- its own shard, so it waits for no enqueue and, mostly, for no other
-- executor's results. Counts are locked in owner order, then slot rows in
-- function order, as enqueues lock them.
create or replace function plat_execution_jobs_gone() returns trigger language plpgsql as $$
declare
    freed record;
begin
    insert into queue_owner_counts as c (owner_id, shard, n)
    select owner_id, plat_count_shard(), -count(*) from gone group by owner_id order by owner_id
    on conflict (owner_id, shard) do update set n = c.n + excluded.n, updated_at = now();
    for freed in
        select function_id, count(*) as n from gone where holds_slot
        group by function_id order by function_id
    loop
        perform plat_release_function_slots(freed.function_id, freed.n);
    end loop;
    return null;
end
$$;

-- An exact recount of the owners' counts and the functions' taken slots,
-- for an operator who changed queue rows by hand (the statements keep them
-- exact otherwise). Returns how many counts were wrong. The table locks
-- wait for every statement that is changing jobs or counts to commit and
-- hold off new ones until this one does, so what it counts is what the
-- counts should say. Jobs first: a statement deleting jobs holds that table
-- before its trigger takes the counts.
create or replace function plat_recount_queue() returns bigint language plpgsql as $$
declare
    owners_fixed bigint;
    slots_fixed bigint;
begin
    lock table execution_jobs, queue_owner_counts, function_slots in share row exclusive mode;
    -- Shard 0 takes whatever makes the owner's sum right.
    with actual as (
        select owner_id, count(*) as n from execution_jobs group by owner_id
    ), counted as (
        select owner_id, coalesce(sum(n) filter (where shard <> 0), 0) as others, sum(n) as n
        from queue_owner_counts group by owner_id
    ), wrong as (
        select coalesce(a.owner_id, c.owner_id) as owner_id,
               coalesce(a.n, 0) - coalesce(c.others, 0) as shard_0
        from actual a full join counted c using (owner_id)
        where coalesce(a.n, 0) <> coalesce(c.n, 0)
    ), fixed as (
        insert into queue_owner_counts as q (owner_id, shard, n)
        select owner_id, 0, shard_0 from wrong
        on conflict (owner_id, shard) do update set n = excluded.n, updated_at = now()
        returning 1
    )
    select count(*) into owners_fixed from fixed;
    with actual as (
        select s.function_id, coalesce(c.n, 0) as n
        from function_slots s
        left join (select function_id, count(*) as n from execution_jobs where holds_slot
                   group by function_id) c using (function_id)
    ), changed as (
        update function_slots s set taken = actual.n, updated_at = now()
        from actual where s.function_id = actual.function_id and s.taken <> actual.n
        returning 1
    )
    select count(*) into slots_fixed from changed;
    return owners_fixed + slots_fixed;
end
$$;

create table queue_clock (
    only_row boolean primary key default true,
    -- The smallest stamp of the latest claim: the queue's front is at or
    -- after it, but for a few runs that came back with older stamps.
    vt double precision not null default 0,
    updated_at timestamptz not null default now(),
    constraint queue_clock_one_row check (only_row)
);
insert into queue_clock default values;
-- One row: say so to the planner now (see common/src/db.rs on estimates).
analyze queue_clock;
-- Updated by every claim: room on its page for HOT updates.
alter table queue_clock set (fillfactor = 10, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);

-- Runs that come back to the queue with their old stamps (admitted after
-- waiting for a concurrency slot) are behind the executors' scans: the
-- notification tells them to claim from the start.
create or replace function plat_admit_parked(f uuid) returns void language plpgsql as $$
declare
    cap integer;
    taken_now bigint;
    admitted bigint;
begin
    select max_running, taken into cap, taken_now from function_slots where function_id = f for update;
    if not found or (cap is not null and taken_now >= cap) then
        return;
    end if;
    with woken as (
        update execution_jobs j set parked = false, holds_slot = cap is not null
        where j.id in (
            select id from execution_jobs
            where function_id = f and parked
            order by vt, id
            limit case when cap is null then null else cap - taken_now end
            for update skip locked
        )
        returning 1
    )
    select count(*) into admitted from woken;
    if admitted > 0 then
        if cap is not null then
            update function_slots set taken = taken + admitted, updated_at = now() where function_id = f;
        end if;
        perform pg_notify('plat_execution_jobs', 'old-stamps');
    end if;
end
$$;

-- Enqueues (API) add to the counts; every statement that deletes jobs (the
-- API's cancellations, the executor's results and rescues) takes off
-- through the trigger, as its own role.
grant select, insert, update on queue_owner_counts to plat_api, plat_executor;
grant select on queue_in_flight to plat_api;
grant execute on function plat_count_shard() to plat_api, plat_executor;
grant select on queue_clock to plat_api;
grant select, update on queue_clock to plat_executor;
