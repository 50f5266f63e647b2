-- The dashboard's operations page lists the newest failures of both queues
-- (GET /queues). Failures are few, so these partial indexes are small and
-- cost nothing on the hot path of successful runs; without them the newest
-- failed executions would take a scan of the whole history.
create index executions_failed_idx on executions (finished_at desc) where status = 'FAILED';
create index function_versions_failed_idx on function_versions (updated_at desc) where status = 'FAILED';
