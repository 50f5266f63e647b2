-- Both job tables carry the same lease columns, so one lease lifecycle
-- (common/src/queue/lease.rs) serves them: stamped per table, its
-- statements are otherwise the same text. compile_jobs lacked only
-- cancel_requested. No compile job is asked to stop today; the column keeps
-- its default, and the lifecycle's rules for a job asked to stop (never
-- given back to the queue, ended by the rescuer) read the same for both.
-- A constant default adds the column without rewriting the table.
alter table compile_jobs add column cancel_requested boolean not null default false;
