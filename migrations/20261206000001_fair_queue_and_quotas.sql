-- Fair claiming between owners and functions, per-user quotas and
-- per-function concurrency limits (docs/architecture.md, "Fairness and
-- quotas").
--
-- Each execution job gets a virtual-time stamp `vt` when it is queued, and
-- the claim takes jobs in `vt` order. The stamp is start-time fair queueing
-- done at enqueue: every (owner, function) pair is a flow with its own clock
-- (`queue_flows.next_vt`), which a run advances by the owner's number of
-- busy flows divided by the owner's weight. A new flow starts at the queue's
-- current virtual time (the smallest stamp still waiting), so an owner with a
-- backlog cannot push back someone who queues later, and an idle owner cannot
-- bank credit. The claim statement is unchanged but for its ORDER BY.
--
-- The owner is the user who queued the run (`executions.created_by`); runs
-- queued without a user share the nil owner.

create table queue_owners (
    owner_id uuid primary key,
    -- QUEUED + RUNNING executions of this owner: the enqueue statements add
    -- to it (refusing what would go over the caller's quota), the trigger
    -- below takes off every job that leaves the queue.
    in_flight bigint not null default 0,
    -- The owner's share of the executors relative to others (1 = equal).
    weight double precision not null default 1,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint queue_owners_weight_positive check (weight > 0)
);

create table queue_flows (
    owner_id uuid not null,
    function_id uuid not null,
    -- The stamp the flow's next run would get (if the queue has not moved
    -- past it).
    next_vt double precision not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (owner_id, function_id)
);

-- Both are updated on every enqueue (and queue_owners on every result):
-- leave room on each page for HOT updates, vacuum early.
alter table queue_owners set (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 0);
alter table queue_flows set (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 0);

alter table execution_jobs
    add column owner_id uuid not null default '00000000-0000-0000-0000-000000000000',
    add column vt double precision not null default 0,
    -- Queued but not admitted: its function is at executionConfig.maxConcurrency.
    -- A parked job is not claimable; a finishing run of its function admits it.
    add column parked boolean not null default false,
    -- Admitted under a concurrency limit: it holds one of function_slots.taken
    -- until it leaves the queue.
    add column holds_slot boolean not null default false,
    add constraint execution_jobs_parked_jobs_wait
        check (not parked or (state = 'available' and not holds_slot));

-- Jobs already queued keep their FIFO order (equal stamps are taken in id
-- order, and execution ids are UUIDv7) ahead of anything queued later.
update execution_jobs j set owner_id = e.created_by
from executions e where e.id = j.id and e.created_by is not null;
insert into queue_owners (owner_id, in_flight)
select owner_id, count(*) from execution_jobs group by owner_id;

-- The claim's index: matches its WHERE and ORDER BY. It replaces the FIFO
-- index, so an enqueue and a claim still write the same number of entries.
drop index execution_jobs_claim_idx;
create index execution_jobs_fair_idx on execution_jobs (vt, id) where state = 'available' and not parked;
-- Parked jobs of a function, in the order they are admitted.
create index execution_jobs_parked_idx on execution_jobs (function_id, vt, id) where parked;

-- Functions whose version has executionConfig.maxConcurrency: `taken` counts
-- the admitted runs (queued in the claimable index or running), which never
-- exceeds `max_running`, so neither do the RUNNING ones, whatever the number
-- of executors. Null `max_running`: the newest runs were queued without a
-- limit (a version without one).
create table function_slots (
    function_id uuid primary key,
    max_running integer,
    taken bigint not null default 0,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint function_slots_max_running_positive check (max_running is null or max_running > 0)
);
alter table function_slots set (fillfactor = 70);

-- Admits parked runs of `f` while it has free slots (all of them when it has
-- no limit any more), oldest stamp first, and wakes the executors. Takes the
-- slot row's lock: callers that hold owner rows took those first.
create function plat_admit_parked(f uuid) returns void language plpgsql as $$
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
        perform pg_notify('plat_execution_jobs', '');
    end if;
end
$$;

-- Gives back `n` slots of `f` and admits parked runs into them.
create function plat_release_function_slots(f uuid, n bigint) returns void language plpgsql as $$
begin
    update function_slots set taken = greatest(taken - n, 0), updated_at = now() where function_id = f;
    perform plat_admit_parked(f);
end
$$;

-- Called by an enqueue of `k` runs of a function whose version has the limit
-- `cap` (or none, when the function had one before): records the limit,
-- admits parked runs first, and returns how many of the `k` new runs are
-- admitted; the others are parked.
create function plat_take_function_slots(f uuid, cap integer, k bigint) returns bigint
language plpgsql as $$
declare
    taken_now bigint;
    admitted bigint;
begin
    if cap is null then
        update function_slots set max_running = null, updated_at = now()
        where function_id = f and max_running is not null;
        perform plat_admit_parked(f);
        return k;
    end if;
    insert into function_slots as s (function_id, max_running) values (f, cap)
    on conflict (function_id) do update set max_running = excluded.max_running, updated_at = now()
        where s.max_running is distinct from excluded.max_running;
    perform plat_admit_parked(f);
    select taken into taken_now from function_slots where function_id = f for update;
    admitted := least(k, greatest(cap - taken_now, 0));
    if admitted > 0 then
        update function_slots set taken = taken + admitted, updated_at = now() where function_id = f;
    end if;
    return admitted;
end
$$;

-- Every job that leaves the queue (a result, a cancel, a lost worker, a
-- deleted function) leaves its owner's in_flight count, and gives back its
-- function's slot (admitting a parked run), in the same statement, whichever
-- code path deleted it. Rows are locked in one order, owners by id then slot
-- rows by function id, as enqueues do, so no two statements deadlock.
create function plat_execution_jobs_gone() returns trigger language plpgsql as $$
declare
    gone_owner record;
    freed record;
begin
    for gone_owner in
        select owner_id, count(*) as n from gone group by owner_id order by owner_id
    loop
        update queue_owners
        set in_flight = greatest(in_flight - gone_owner.n, 0), updated_at = now()
        where owner_id = gone_owner.owner_id;
    end loop;
    for freed in
        select function_id, count(*) as n from gone where holds_slot
        group by function_id order by function_id
    loop
        perform plat_release_function_slots(freed.function_id, freed.n);
    end loop;
    return null;
end
$$;

create trigger execution_jobs_gone
    after delete on execution_jobs
    referencing old table as gone
    for each statement execute function plat_execution_jobs_gone();

-- An exact recount of the owners' in_flight and the functions' taken slots,
-- for an operator who changed queue rows by hand (the trigger keeps them
-- exact otherwise). Returns how many counts were wrong. It locks every row
-- first, in the order everyone else does: an enqueue holds its owner's and
-- function's rows until it commits, and a statement that deletes jobs takes
-- them after the delete, so the count that follows sees every job whose
-- counter has moved, and decrements still waiting apply to the recount.
create function plat_recount_queue() returns bigint language plpgsql as $$
declare
    owners_fixed bigint;
    slots_fixed bigint;
begin
    perform 1 from queue_owners order by owner_id for update;
    perform 1 from function_slots order by function_id for update;
    with actual as (
        select o.owner_id, coalesce(c.n, 0) as n
        from queue_owners o
        left join (select owner_id, count(*) as n from execution_jobs group by owner_id) c
            using (owner_id)
    ), changed as (
        update queue_owners o set in_flight = actual.n, updated_at = now()
        from actual where o.owner_id = actual.owner_id and o.in_flight <> actual.n
        returning 1
    )
    select count(*) into owners_fixed from changed;
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
