-- TypeScript functions link against a shared JavaScript engine module
-- (QuickJS built for wasm32-wasip1, pre-initialised). Each engine build is
-- stored once, named by its sha256, and never changes or goes away while a
-- version uses it: a function built for one engine always runs with it, so
-- upgrading the engine never breaks a deployed function.
--
-- Rows are immutable (content-addressed), hence no updated_at.
create table js_engines (
    sha256 text primary key,
    module bytea not null,
    created_at timestamptz not null default now(),
    constraint js_engines_sha256_is_hex check (sha256 ~ '^[0-9a-f]{64}$')
);

-- The engine build a READY version links against; null for standalone
-- modules (Rust).
alter table function_versions
    add column engine_sha256 text references js_engines (sha256),
    add constraint function_versions_engine_only_when_ready
        check (engine_sha256 is null or status = 'READY');
