-- A function's HTTP route (docs/triggers.md, "HTTP routes"): at most one
-- per function, not versioned. Requests to `/run/{name}` (and to
-- `path_prefix`, when set) become executions of the function's active
-- version, with `executions.trigger = {"type": "http", ...}`.
create table function_routes (
    function_id uuid primary key references functions (id) on delete cascade,
    enabled boolean not null default true,
    -- true: anyone may call it, without credentials, and it runs as
    -- `owner_id`; false: the caller's API key or session, as for execute
    public boolean not null default false,
    -- an extra path the route answers under, e.g. `/hooks/github`; the API
    -- checks it stays clear of its own paths
    path_prefix text,
    -- a public route's limit per client address (0: none)
    rate_limit_per_sec double precision not null,
    rate_limit_burst integer not null,
    -- request headers passed to the function, lower case
    forward_headers text[] not null default '{}',
    -- who last configured it: public requests run as (and count against
    -- the queue quota of) this user; null once they are deleted, and then
    -- a public route answers no more
    owner_id uuid references users (id) on delete set null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint function_routes_path_prefix_key unique (path_prefix),
    constraint function_routes_rate_limit_check check (rate_limit_per_sec >= 0 and rate_limit_burst >= 1)
);

-- Only the API reads and writes routes (docs/security.md, "Database roles").
grant select, insert, update, delete on function_routes to plat_api;
