-- One-time password reset tokens (docs/security.md, "Passwords"): an admin
-- issues one for a user; whoever holds it sets that user's password once,
-- before it expires. Only the SHA-256 of the token is stored.
create table password_resets (
    id uuid primary key,
    user_id uuid not null references users (id) on delete cascade,
    token_hash bytea not null,
    -- The admin who issued it (null once that admin is deleted).
    created_by uuid references users (id) on delete set null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    expires_at timestamptz not null,
    -- Set when the token is spent, or superseded by a newer one or by a
    -- password set another way: a token works at most once.
    used_at timestamptz,
    constraint password_resets_token_hash_key unique (token_hash)
);
create index password_resets_user_idx on password_resets (user_id) where used_at is null;
