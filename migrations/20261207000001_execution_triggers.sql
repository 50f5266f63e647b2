-- What started an execution, for the executions a schedule, an HTTP route or
-- an admin's re-queue makes (`plat_common::Trigger`, as JSON). Null for a
-- call of the API (`execute`, batches): the common case stores nothing.
-- No index: the result write must stay a HOT update (migration
-- 20261128000001), and lookups by trigger go through the trigger's own
-- tables (a schedule's fires, say).
alter table executions add column trigger jsonb;
