-- While an execution is unfinished its changing state lives on its job only:
-- claiming writes the job row, not the execution too (one row per claim
-- instead of two, each with its index entries). An execution reads as
-- RUNNING while its job is claimed; the result copies the job's start time,
-- attempt and worker onto the execution. See common/src/queue/mod.rs and
-- the `execution_states` view below.
alter table execution_jobs add column started_at timestamptz;

update execution_jobs j set started_at = e.started_at
from executions e where e.id = j.id and j.state = 'running';
update executions e set status = 'QUEUED'
from execution_jobs j where j.id = e.id and e.status = 'RUNNING';

-- Only deleting a function looks jobs up by function (and the hot table is
-- small); the index cost an entry on every enqueue and every claim.
drop index execution_jobs_function_idx;

-- Executions as the API shows them, for people with psql.
create view execution_states as
select e.id, e.function_id, e.function_version,
       case when j.state = 'running' then 'RUNNING' else e.status::text end as status,
       coalesce(j.attempt, e.attempts) as attempts,
       coalesce(j.worker_id, e.worker_id) as worker_id,
       e.created_at,
       coalesce(j.started_at, e.started_at) as started_at,
       e.finished_at, e.duration_ms, e.error_type, e.error_message
from executions e left join execution_jobs j on j.id = e.id;
