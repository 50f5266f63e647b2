-- One PostgreSQL role per service, each with the least it needs, so that a
-- compromised component (the compiler runs untrusted build scripts and
-- macros next to its database connection) cannot read or change what is
-- not its business. docs/security.md, "Database roles", tells operators how
-- to use them.
--
-- * plat_api: the control plane. Reads and writes nearly everything, but
--   the audit log is append-only (no update, no delete) and it never
--   touches the JavaScript engines.
-- * plat_compiler: claims compile jobs and writes builds. It cannot read
--   users, api_keys, sessions, environments or executions (inputs,
--   outputs, logs), and of function_versions only the columns a build
--   needs (not execution_config, whose environment variables are the
--   owner's).
-- * plat_executor: claims execution jobs, loads modules and environments
--   (it decrypts them), writes results. It cannot read users, api_keys,
--   sessions, groups or the audit log.
--
-- The roles are NOLOGIN groups: a deployment logs in as its own LOGIN roles
-- that are members of them (`create role plat_api_login login password
-- '…' in role plat_api`), which `plat up` does for its own cluster.
-- Migrations themselves are DDL and run as the schema's owner (a superuser
-- or the database owner), never as these roles: `api migrate` /
-- `plat migrate` with an owner's URL.
--
-- Roles are cluster-wide while this runs once per database, and many
-- databases of one cluster may migrate at once (the tests do): creating a
-- role that another transaction just created fails with duplicate_object,
-- or unique_violation while that transaction is still committing, and
-- either means "it exists", which is all we want.
--
-- Grants are per table and explicit, one block per role: a migration that
-- adds a table or column adds a grant for each role that needs it (nothing
-- is granted by default privileges, so a new table is invisible to every
-- service until it does). Triggers run with the rights of the statement's
-- user: whoever finishes executions (the executor's results, the API's
-- cancellations, both services' rescuers) also writes the rollups and
-- unsuccessful_executions through plat_roll_up_finished and
-- plat_record_unsuccessful. Foreign-key checks and cascades run as the
-- table owner and need no grant.

do $$
declare
    role_name text;
begin
    foreach role_name in array array['plat_api', 'plat_compiler', 'plat_executor'] loop
        begin
            execute format('create role %I nologin', role_name);
        exception when duplicate_object or unique_violation then
            null;
        end;
    end loop;
end
$$;

-- Objects are named unqualified in the queries, in the public schema.
grant usage on schema public to plat_api, plat_compiler, plat_executor;

-- ---------------------------------------------------------------- plat_api
grant select, insert, update, delete on
    functions, function_versions, compile_jobs, executions, execution_jobs,
    users, groups, group_members, api_keys, sessions, environments, workers,
    password_resets, queue_owners, queue_flows, function_slots
    to plat_api;
-- Append-only: an API compromise cannot erase its own tracks.
grant select, insert on audit_log to plat_api;
-- Read by stats and GET /queues, swept by retention, and written by the
-- triggers when the API cancels executions.
grant select, insert, update, delete on execution_rollups, execution_throughput to plat_api;
grant select, insert on unsuccessful_executions to plat_api;
grant select on queue_overview to plat_api;
grant execute on function plat_duration_bounds(), plat_duration_bucket(integer),
    plat_histogram(integer[], bigint[]) to plat_api;

-- ----------------------------------------------------------- plat_compiler
grant select, update on compile_jobs to plat_compiler;
-- Finishing a build deletes its job in the statement that writes the result.
grant delete on compile_jobs to plat_compiler;
grant select (function_id, version, source, status) on function_versions to plat_compiler;
grant update (status, module, module_sha256, compile_duration_ms, compile_error, engine_sha256,
              compiled_at, updated_at) on function_versions to plat_compiler;
-- The claim reads the language; a READY build moves active_version forward.
grant select (id, language, active_version) on functions to plat_compiler;
grant update (active_version, updated_at) on functions to plat_compiler;
-- Stores the engine build it links TypeScript against (insert … on
-- conflict (sha256) do nothing reads the conflict column).
grant select (sha256), insert on js_engines to plat_compiler;
grant select, insert, update on workers to plat_compiler;

-- ----------------------------------------------------------- plat_executor
grant select, update, delete on execution_jobs to plat_executor;
-- Every job a result or a rescue deletes leaves its owner's in_flight count
-- and gives back its function's slot, admitting a parked run: the trigger
-- execution_jobs_gone does it as the deleting role.
grant select, update on queue_owners, function_slots to plat_executor;
grant select (id, input, request_id) on executions to plat_executor;
grant update (status, output, error_type, error_message, logs, logs_truncated, duration_ms,
              finished_at, attempts, worker_id, started_at) on executions to plat_executor;
-- retired_at: a job of a version retired after it was queued ends CANCELLED.
grant select (function_id, version, status, module, execution_config, engine_sha256, retired_at)
    on function_versions to plat_executor;
grant select (id, environment_id) on functions to plat_executor;
-- Decrypts the function's environment at run time (PLAT_SECRETS_KEY).
grant select (id, revision, variables) on environments to plat_executor;
grant select on js_engines to plat_executor;
grant select, insert, update on workers to plat_executor;
-- Written by the triggers when results finish executions.
grant select, insert, update on execution_rollups, execution_throughput to plat_executor;
grant select, insert on unsuccessful_executions to plat_executor;
grant execute on function plat_duration_bounds(), plat_duration_bucket(integer),
    plat_histogram(integer[], bigint[]) to plat_executor;
