-- Idempotent execute and cancellation.
--
-- An execution may carry the client's Idempotency-Key: one execution per
-- (function, key), enforced by a unique index, so a retried request returns
-- the execution the first one created instead of running the function again.
alter table executions add column idempotency_key text;
create unique index executions_idempotency_key_idx
    on executions (function_id, idempotency_key) where idempotency_key is not null;

-- A running job asked to stop. The executor that holds it sees the flag
-- through a notification (promptly) or its next heartbeat (as a backstop),
-- and never requeues a job that carries it.
alter table execution_jobs add column cancel_requested boolean not null default false;

-- A cancelled execution records why in error_type/error_message (CANCELLED),
-- like a failed one; a succeeded, queued or running one has no error.
alter table executions drop constraint executions_failed_has_error;
alter table executions add constraint executions_error_matches_status
    check (case status
               when 'FAILED' then error_type is not null
               when 'CANCELLED' then true
               else error_type is null
           end);
