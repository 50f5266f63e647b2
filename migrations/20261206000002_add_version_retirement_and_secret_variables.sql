-- Retired versions and write-only environment variables (issue 25,
-- findings 3 and 4; docs/versions-and-discovery.md and docs/security.md).

-- A retired version never runs again: executions of it are refused, the
-- ones still queued when it is retired are cancelled, and a rollback to it
-- is refused. It stays in the history, readable. Retiring cannot be undone,
-- so there is no message to change later, only the time.
alter table function_versions add column retired_at timestamptz;

-- The names of an environment's secret variables. Their values live with
-- the others in the sealed `variables` (so executors read them unchanged),
-- but no endpoint returns them. A name here without a value in `variables`
-- is a secret declared but not set: runs do not get it.
alter table environments add column secret_variables text[] not null default '{}';
