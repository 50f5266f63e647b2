-- Issue 33: functions declare dependencies, each version keeps the lockfile
-- they resolved to, and sources and lockfiles are stored encrypted
-- (docs/dependencies.md).

alter table function_versions
    -- What the version declares: {"regex": "1", "chrono": {"version": "0.4", ...}}.
    -- Not secret (names and requirements), and queryable by operators.
    add column dependencies jsonb not null default '{}',
    -- The source, sealed with PLAT_SECRETS_KEY (common/src/secrets.rs).
    add column source_sealed bytea,
    -- The resolved lockfile (Cargo.lock, or Plat's npm lock), sealed the same
    -- way; null while the version has none (no dependencies, or not yet built).
    add column lockfile_sealed bytea,
    -- What the build reported without failing (advisories under the `warn`
    -- policy), for the version's readers.
    add column build_warnings text[] not null default '{}',
    -- New versions write only source_sealed; rows from before this migration
    -- keep their plaintext until the API seals them at start-up.
    alter column source drop not null,
    add constraint function_versions_source_present
        check (source is not null or source_sealed is not null);

-- The rows still in plaintext, found without a scan at every API start.
create index function_versions_unsealed on function_versions (function_id, version)
    where source is not null;

grant select (dependencies, source_sealed, lockfile_sealed) on function_versions to plat_compiler;
grant update (lockfile_sealed, build_warnings) on function_versions to plat_compiler;
