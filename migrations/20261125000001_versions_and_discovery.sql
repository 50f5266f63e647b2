-- Versions with semantic version numbers, deprecation and rollback; and
-- discovery (full-text search, tag filters). docs/versions-and-discovery.md
-- describes the rules.

-- Every version has a semantic version (SemVer 2.0.0, as the `semver` crate
-- prints it), unique per function. The API only accepts a new one that is
-- strictly greater (by SemVer precedence) than every existing one, so the
-- running number and the semantic version order the versions the same way:
-- ordering by `version` is ordering by semver, and SQL never has to parse it.
-- Versions that exist before this migration get `0.0.<version>`, which keeps
-- that property (0.0.1 < 0.0.2 < ...); their next version, unless the
-- client names one, is the next patch.
alter table function_versions add column semver text;
update function_versions set semver = '0.0.' || version;
alter table function_versions
    alter column semver set not null,
    add constraint function_versions_semver_key unique (function_id, semver),
    -- A loose shape check; the API validates the full grammar.
    add constraint function_versions_semver_shape check (semver ~ '^[0-9]+\.[0-9]+\.[0-9]+([-+].*)?$');

-- A deprecated version still runs; its responses say so (RFC 9745
-- `Deprecation`, and `Plat-Deprecation-Message`).
alter table function_versions
    add column deprecated_at timestamptz,
    add column deprecation_message text,
    add constraint function_versions_deprecation_has_message
        check ((deprecated_at is null) = (deprecation_message is null));

-- Discovery. The name is indexed with the 'simple' configuration (no
-- stemming, no stop words), both whole and split at `-`, `_`, `.` and `/`,
-- so `hello-world` and `image.resize` match `hello`, `world`, `resize`; the
-- description with 'english' (stemmed). Name lexemes weigh A, description
-- ones B, so ts_rank puts a name match above a description match.
alter table functions add column search tsvector generated always as (
    setweight(to_tsvector('simple', name || ' ' || translate(name, '-_./', '    ')), 'A')
    || setweight(to_tsvector('english', coalesce(description, '')), 'B')
) stored;
create index functions_search_idx on functions using gin (search);
-- `tags @> array[...]`: every requested tag present.
create index functions_tags_idx on functions using gin (tags);
-- `sort=updated` pages newest first by (updated_at, id), like created_at.
create index functions_updated_at_idx on functions (updated_at desc, id desc);
