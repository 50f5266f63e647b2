-- Plat becomes multi-user: users and groups, browser sessions and API keys,
-- environments (encrypted configuration), who may see each function and
-- environment, and an audit log. docs/security.md describes the model.

create type user_role as enum ('ADMIN', 'DEV');

create table users (
    id uuid primary key,
    email text not null,
    display_name text,
    role user_role not null,
    -- argon2id, in the PHC string format; null for a user who signs in with
    -- API keys only (the bootstrap admin)
    password_hash text,
    disabled boolean not null default false,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create unique index users_email_key on users (lower(email));

create table groups (
    id uuid primary key,
    name text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint groups_name_key unique (name)
);

create table group_members (
    group_id uuid not null references groups (id) on delete cascade,
    user_id uuid not null references users (id) on delete cascade,
    added_at timestamptz not null default now(),
    primary key (group_id, user_id)
);
-- Authentication reads a user's groups on every credential lookup.
create index group_members_user_idx on group_members (user_id);

-- Keys are stored as the SHA-256 of the key: a key is 256 random bits, so a
-- fast hash cannot be brute-forced, and lookups stay one index probe.
create table api_keys (
    id uuid primary key,
    user_id uuid not null references users (id) on delete cascade,
    name text not null,
    -- the first characters of the key, shown so people can tell keys apart
    prefix text not null,
    key_hash bytea not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz,
    last_used_at timestamptz,
    revoked_at timestamptz,
    constraint api_keys_key_hash_key unique (key_hash)
);
create index api_keys_user_idx on api_keys (user_id, created_at desc, id desc);

-- Browser sessions; the cookie holds the token, the table its SHA-256.
create table sessions (
    id uuid primary key,
    user_id uuid not null references users (id) on delete cascade,
    token_hash bytea not null,
    created_at timestamptz not null default now(),
    last_seen_at timestamptz not null default now(),
    -- sliding: moved forward on use, never past absolute_expires_at
    expires_at timestamptz not null,
    absolute_expires_at timestamptz not null,
    revoked_at timestamptz,
    source_address text,
    user_agent text,
    constraint sessions_token_hash_key unique (token_hash)
);
create index sessions_user_idx on sessions (user_id, created_at desc, id desc);

-- Named configuration for functions. `variables` is the JSON object of
-- name → value, encrypted (XChaCha20-Poly1305, see common/src/secrets.rs);
-- `revision` grows on every change so executors know when to re-read it.
create table environments (
    id uuid primary key,
    name text not null,
    description text,
    variables bytea not null,
    revision bigint not null default 1,
    allowed_users uuid[] not null default '{}',
    allowed_groups uuid[] not null default '{}',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint environments_name_key unique (name)
);

-- Empty lists on both mean public: every user may see the function.
alter table functions
    add column allowed_users uuid[] not null default '{}',
    add column allowed_groups uuid[] not null default '{}',
    add column environment_id uuid references environments (id);

-- Who started each run. No foreign key, like function_id: the history
-- outlives users.
alter table executions add column created_by uuid;

create table audit_log (
    id uuid primary key,
    at timestamptz not null default now(),
    -- null for failed logins and the bootstrap
    actor_id uuid,
    actor_email text,
    action text not null,
    target_type text,
    target_id text,
    source_address text,
    -- what changed; never a password, key or secret value
    details jsonb not null default '{}'
);
create index audit_log_at_idx on audit_log (at desc, id desc);
create index audit_log_actor_idx on audit_log (actor_id, at desc, id desc);
create index audit_log_target_idx on audit_log (target_id, at desc, id desc);

-- An Idempotency-Key is the caller's own: two users who pick the same key
-- get two executions, and neither sees the other's.
drop index executions_idempotency_key_idx;
create unique index executions_idempotency_key_idx
    on executions (function_id, created_by, idempotency_key) where idempotency_key is not null;
