-- A result now updates its history row in place: a HOT update, with no new
-- index entries. It was a new row version with an entry in every index of
-- `executions`, because two indexes named `status`, which every result
-- changes. PostgreSQL updates a row in place only when no indexed column
-- changes and the new version fits on the same page. So:
--
-- * Nothing on `executions` indexes a column that a result writes. The
--   index of (function_id, status, …) served listing by status, and the
--   partial index of failures served the newest failures. They are
--   replaced by `unsuccessful_executions`, which a trigger (below) gives a
--   row only for executions that end FAILED or CANCELLED. Listing by the
--   other statuses reads the queue table (QUEUED, RUNNING) or the
--   function's history filtered (SUCCEEDED; most rows there are successes).
-- * Pages keep room for the new versions. A result statement finishes about
--   40 executions queued together, which sit on the same one or two pages,
--   and every old version stays there until the statement commits. With a
--   fillfactor of 40, all 20,000 updates of a drain with small outputs were
--   HOT (15,600 of 20,000 at 50). History pages then stay about half
--   empty: the price of 5–10% more executions/s (docs/benchmarks.md,
--   "What each change did"). Pages written before this migration keep their
--   old packing. An update that does not fit (a large output) is an
--   ordinary update, as before.

create table unsuccessful_executions (
    id uuid primary key references executions (id) on delete cascade,
    function_id uuid not null,
    status execution_status not null,
    created_at timestamptz not null,
    finished_at timestamptz not null,
    constraint unsuccessful_executions_status check (status in ('FAILED', 'CANCELLED'))
);
-- GET /functions/{id}/executions?status=FAILED|CANCELLED, newest first.
create index unsuccessful_executions_function_idx
    on unsuccessful_executions (function_id, status, created_at desc, id desc);
-- GET /queues: the newest failures of all functions.
create index unsuccessful_executions_failed_idx
    on unsuccessful_executions (finished_at desc) where status = 'FAILED';

insert into unsuccessful_executions (id, function_id, status, created_at, finished_at)
select id, function_id, status, created_at, finished_at
from executions where status in ('FAILED', 'CANCELLED');

drop index executions_function_status_idx;
drop index executions_failed_idx;
alter table executions set (fillfactor = 40);

-- Like the rollups (20261124000002), filled by a trigger on every statement
-- that finishes executions, whatever the path: results, cancellations, lost
-- workers. A statement of successes reads its transition table and inserts
-- nothing. A terminal status is final, so a row already recorded is only
-- seen again if someone edits history by hand.
create function plat_record_unsuccessful() returns trigger language plpgsql as $$
begin
    insert into unsuccessful_executions (id, function_id, status, created_at, finished_at)
    select n.id, n.function_id, n.status, n.created_at, n.finished_at
    from new_rows n
    where n.status in ('FAILED', 'CANCELLED')
    on conflict (id) do nothing;
    return null;
end
$$;

create trigger executions_record_unsuccessful
    after update on executions
    referencing new table as new_rows
    for each statement execute function plat_record_unsuccessful();
