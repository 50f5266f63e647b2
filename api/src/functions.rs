//! `/functions`: register, read, change and delete functions. Every change
//! that needs a build writes the new version and its compile job in one
//! transaction, so a version exists exactly when its job does. Listing and
//! search live in `discovery`, the versions (rollback, deprecation) in
//! `versions`; docs/versions-and-discovery.md describes both.

mod discovery;
pub(crate) mod input;
pub(crate) mod versions;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use plat_common::dependencies::{self, Dependencies};
use plat_common::queue::compile;
use plat_common::secrets::{SecretsKey, VersionPart};
use plat_common::{ExecutionConfig, Language, VersionStatus};
use serde::Serialize;
use serde_json::json;
use sqlx::types::Json as SqlJson;
use sqlx::{PgExecutor, PgPool};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use self::input::{CreateFunction, UpdateFunction};
use self::versions::{Deprecation, VersionKey};
use crate::auth::Caller;
use crate::error::{self, Error, Result};
use crate::extract::{Json, Path};
use crate::policy;
use crate::{access, audit, ApiConfig, AppState};

pub fn router(state: &AppState) -> crate::openapi::ApiRouter {
    // JSON escaping can make a source up to six times longer on the wire
    // (`\u0000`); the exact limit is checked on the decoded source.
    let body_limit = state
        .config
        .max_source_bytes
        .saturating_mul(6)
        .saturating_add(64 * 1024);
    OpenApiRouter::new()
        .routes(routes!(discovery::list, create))
        .routes(routes!(read, update, remove))
        .layer(DefaultBodyLimit::max(body_limit))
        .merge(versions::router())
}

/// A function as the API shows it: identity and metadata, plus the newest
/// version's status, compile error and execution config, the semantic
/// versions of the newest and the active version, and how its runs went.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionView {
    id: Uuid,
    name: String,
    language: Language,
    description: Option<String>,
    tags: Vec<String>,
    status: VersionStatus,
    compile_error: Option<String>,
    #[sqlx(rename = "latest_version")]
    version: i32,
    active_version: Option<i32>,
    /// The newest version's semantic version.
    semver: String,
    /// The active version's; null while no version is READY.
    active_semver: Option<String>,
    /// `Json` so that `query_as!` decodes the column into it directly.
    #[schema(value_type = crate::openapi::ExecutionConfig)]
    execution_config: SqlJson<ExecutionConfig>,
    /// Who may see and run it; both empty: everyone.
    allowed_users: Vec<Uuid>,
    allowed_groups: Vec<Uuid>,
    environment_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Finished executions, all time.
    execution_count: i64,
    /// SUCCEEDED over finished executions (as `/stats`); null without any.
    success_rate: Option<f64>,
    /// Where Plat POSTs each finished execution (docs/triggers.md).
    webhook_url: Option<String>,
    /// What the newest version declares it depends on (docs/dependencies.md).
    #[schema(value_type = std::collections::BTreeMap<String, plat_common::dependencies::DependencySpec>)]
    dependencies: SqlJson<Dependencies>,
    /// The webhook signing secret, only in the answer that made it.
    #[sqlx(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_secret: Option<String>,
}

impl FunctionView {
    /// The view as `caller` may see it (see [`hide_values`]).
    pub(crate) fn for_caller(mut self, caller: &Caller) -> Self {
        hide_values(&mut self.execution_config, caller);
        self
    }
}

/// What a non-admin sees in place of each value of
/// `executionConfig.environmentVariables`.
pub(crate) const HIDDEN_VALUE: &str = "***";

/// Hides the values of a function's own environment variables from anyone
/// but admins: every DEV who may run a function may read it, and the values
/// are often credentials. The names stay, and the map keeps its type, so
/// clients that read it keep working. Only admins change functions, so a
/// hidden value is never written back.
pub(crate) fn hide_values(config: &mut ExecutionConfig, caller: &Caller) {
    if !policy::can_read_function_variables(caller) {
        for value in config.environment_variables.values_mut() {
            HIDDEN_VALUE.clone_into(value);
        }
    }
}

/// The columns of [`FunctionView`], over [`FUNCTION_FROM`]: the listing's
/// dynamic statement (`discovery`) and [`view`] of one function.
const FUNCTION_COLUMNS: &str = r#"
    f.id, f.name, f.language, f.description, f.tags, f.latest_version, f.active_version,
    f.created_at, f.updated_at, v.status, v.compile_error, v.execution_config,
    f.allowed_users, f.allowed_groups, f.environment_id,
    v.semver, av.semver as active_semver,
    coalesce(s.executions, 0) as execution_count, s.success_rate, f.webhook_url,
    v.dependencies
"#;

/// The tables behind [`FUNCTION_COLUMNS`]; callers add `where` and `order by`.
///
/// The counts come from `execution_rollups` (one row per function, hour,
/// status, error type and writer shard), summed per function: the cost
/// grows with the hours a function was busy, not with its executions, and
/// the lateral subquery runs only for the rows a page returns.
const FUNCTION_FROM: &str = r#"
    from functions f
    join function_versions v on v.function_id = f.id and v.version = f.latest_version
    left join function_versions av on av.function_id = f.id and av.version = f.active_version
    left join lateral (
        select sum(r.executions)::int8 as executions,
               coalesce(sum(r.executions) filter (where r.status = 'SUCCEEDED'), 0)::float8
                   / nullif(sum(r.executions), 0)::float8 as success_rate
        from execution_rollups r
        where r.function_id = f.id
    ) s on true
"#;

/// How a URL names a function: by id, or by its unique name. Names may not
/// parse as UUIDs, so the two never collide.
#[derive(Debug, Clone)]
pub enum FunctionKey {
    Id(Uuid),
    Name(String),
}

impl FunctionKey {
    pub fn parse(raw: String) -> Self {
        match Uuid::try_parse(&raw) {
            Ok(id) => FunctionKey::Id(id),
            Err(_) => FunctionKey::Name(raw),
        }
    }

    fn id(&self) -> Option<Uuid> {
        match self {
            FunctionKey::Id(id) => Some(*id),
            FunctionKey::Name(_) => None,
        }
    }

    fn name(&self) -> Option<&str> {
        match self {
            FunctionKey::Id(_) => None,
            FunctionKey::Name(name) => Some(name),
        }
    }

    pub fn not_found(&self) -> Error {
        match self {
            FunctionKey::Id(id) => Error::NotFound(format!("no function with id {id}")),
            FunctionKey::Name(name) => Error::NotFound(format!("no function named {name:?}")),
        }
    }
}

impl std::fmt::Display for FunctionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FunctionKey::Id(id) => id.fmt(f),
            FunctionKey::Name(name) => name.fmt(f),
        }
    }
}

/// The id of a function and its newest version's status, for routes that
/// act on it.
pub struct FunctionRef {
    pub id: Uuid,
    pub status: VersionStatus,
    allowed_users: Vec<Uuid>,
    allowed_groups: Vec<Uuid>,
}

/// Finds a function by id or name, if `caller` can access it: one they may
/// not see is "not found", exactly like one that does not exist.
/// `for_update` locks its row until the caller's transaction ends.
pub async fn find(
    db: impl PgExecutor<'_>,
    caller: &Caller,
    key: &FunctionKey,
    for_update: bool,
) -> Result<FunctionRef> {
    // Two checked statements rather than a spliced `for update`; the macro
    // writes their shared text once.
    macro_rules! select_function {
        ($lock:literal) => {
            sqlx::query_as!(
                FunctionRef,
                r#"
                select f.id, v.status as "status: VersionStatus", f.allowed_users, f.allowed_groups
                from functions f
                join function_versions v on v.function_id = f.id and v.version = f.latest_version
                where f.id = $1 or f.name = $2
                "# + $lock,
                key.id(),
                key.name()
            )
            .fetch_optional(db)
            .await?
        };
    }
    let row = if for_update {
        select_function!("for update of f")
    } else {
        select_function!("")
    };
    row.filter(|f| policy::can_see_function(caller, &f.allowed_users, &f.allowed_groups))
        .ok_or_else(|| key.not_found())
}

/// A function and the version a run would use, resolved in one query for
/// the execute paths (no extra round trip for deprecation).
pub struct RunTarget {
    pub function: FunctionRef,
    /// The version asked for (or the active one); null if there is none.
    version: Option<i32>,
    version_status: Option<VersionStatus>,
    semver: Option<String>,
    deprecated_at: Option<DateTime<Utc>>,
    deprecation_message: Option<String>,
    retired_at: Option<DateTime<Utc>>,
    /// Whether it is the function's active version.
    active: bool,
    /// The function's `webhookUrl`.
    webhook_url: Option<String>,
    /// Whether it has a webhook signing secret (a `callbackUrl` needs one).
    has_webhook_secret: bool,
}

impl RunTarget {
    /// The version to run: it must exist, be READY and not retired; and a
    /// DEV may run a deprecated version only while it is the active one
    /// (an old version may lack today's fixes, and runs with today's
    /// environment: docs/versions-and-discovery.md).
    pub fn runnable(
        &self,
        key: &FunctionKey,
        asked: Option<&VersionKey>,
        caller: &Caller,
    ) -> Result<i32> {
        let function = &self.function;
        let semver = self.semver.as_deref().unwrap_or_default();
        if let (Some(version), Some(at)) = (self.version, self.retired_at) {
            return Err(Error::VersionRetired(format!(
                "version {version} ({semver}) of function {key} was retired at {}; a retired version never runs again: run the active version (leave out `version`)",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )));
        }
        match (self.version, self.version_status, asked) {
            (Some(version), Some(VersionStatus::Ready), _)
                if self.deprecated_at.is_some()
                    && !self.active
                    && !policy::can_run_deprecated_versions(caller) =>
            {
                Err(Error::Forbidden(format!(
                    "version {version} ({semver}) of function {key} is deprecated and not the active version: only admins may run it; run the active version (leave out `version`)"
                )))
            }
            (Some(version), Some(VersionStatus::Ready), _) => Ok(version),
            (None, _, None) => Err(Error::Conflict(format!(
                "function {} has no READY version yet (its newest version is {}); wait until GET /functions/{} shows status READY",
                function.id, function.status, function.id
            ))),
            (None, _, Some(asked)) => Err(asked.not_found(key)),
            (Some(version), status, _) => Err(Error::Conflict(format!(
                "version {version} of function {key} is {}; only a READY version can run",
                status.map_or("unknown", VersionStatus::as_str)
            ))),
        }
    }

    /// Where to POST the run's finished execution: the function's
    /// `webhookUrl` and the call's `callback_url` (checked here); `None`
    /// for neither.
    pub fn webhook_urls(
        &self,
        config: &ApiConfig,
        callback_url: Option<String>,
    ) -> Result<Option<Vec<String>>> {
        if let Some(url) = &callback_url {
            crate::webhooks::check_url(config, "callbackUrl", url)?;
            if !self.has_webhook_secret {
                return Err(Error::BadRequest(format!(
                    "`callbackUrl` needs the function's webhook signing secret, and function {} has none yet: set its `webhookUrl`, or POST /functions/{}/webhooks/secret",
                    self.function.id, self.function.id
                )));
            }
        }
        let urls: Vec<String> = self
            .webhook_url
            .iter()
            .cloned()
            .chain(callback_url)
            .collect();
        Ok((!urls.is_empty()).then_some(urls))
    }

    /// Whether (and since when, and why) the version to run is deprecated.
    pub fn deprecation(&self) -> Option<Deprecation<'_>> {
        Some(Deprecation {
            at: self.deprecated_at?,
            message: self.deprecation_message.as_deref().unwrap_or_default(),
        })
    }
}

/// [`find`] for running: also reads the version `version` (the active one
/// when `None`), with its status and deprecation, in the same query.
pub async fn find_to_run(
    db: impl PgExecutor<'_>,
    caller: &Caller,
    key: &FunctionKey,
    version: Option<&VersionKey>,
) -> Result<RunTarget> {
    let pick = VersionKey::pick(version);
    // The version to run is resolved to a number first (the one asked for,
    // the active one, or the one with the semver asked for), so the join is
    // one primary-key probe on every execute, however many versions the
    // function has; only a semver key reads the function's versions.
    let row = sqlx::query!(
        r#"
        select f.id, v.status as "status: VersionStatus", f.allowed_users, f.allowed_groups,
               t.version as "version?", t.status as "version_status?: VersionStatus",
               t.semver as "semver?", t.deprecated_at, t.deprecation_message, t.retired_at,
               coalesce(t.version = f.active_version, false) as "active!",
               f.webhook_url, f.webhook_secret is not null as "has_webhook_secret!"
        from functions f
        join function_versions v on v.function_id = f.id and v.version = f.latest_version
        left join function_versions t on t.function_id = f.id
            and t.version = coalesce(
                $3,
                case when $5 then f.active_version end,
                (select s.version from function_versions s
                 where s.function_id = f.id
                   and (s.semver = $4 or split_part(s.semver, '+', 1) = $4)
                 limit 1))
        where f.id = $1 or f.name = $2
        "#,
        key.id(),
        key.name(),
        pick.number,
        pick.semver,
        pick.active,
    )
    .fetch_optional(db)
    .await?
    .map(|row| RunTarget {
        function: FunctionRef {
            id: row.id,
            status: row.status,
            allowed_users: row.allowed_users,
            allowed_groups: row.allowed_groups,
        },
        version: row.version,
        version_status: row.version_status,
        semver: row.semver,
        deprecated_at: row.deprecated_at,
        deprecation_message: row.deprecation_message,
        retired_at: row.retired_at,
        active: row.active,
        webhook_url: row.webhook_url,
        has_webhook_secret: row.has_webhook_secret,
    });
    row.filter(|t| {
        policy::can_see_function(
            caller,
            &t.function.allowed_users,
            &t.function.allowed_groups,
        )
    })
    .ok_or_else(|| key.not_found())
}

/// One function as the API shows it: the listing's statement
/// ([`FUNCTION_COLUMNS`] over [`FUNCTION_FROM`]) for one id, so that a
/// function reads the same from both and its columns are written once.
async fn view(db: impl PgExecutor<'_>, id: Uuid) -> Result<FunctionView> {
    sqlx::QueryBuilder::new("select ")
        .push(FUNCTION_COLUMNS)
        .push(FUNCTION_FROM)
        .push(" where f.id = ")
        .push_bind(id)
        .build_query_as::<FunctionView>()
        .fetch_optional(db)
        .await?
        .ok_or_else(|| FunctionKey::Id(id).not_found())
}

#[utoipa::path(
    get,
    path = "/functions/{function}",
    tag = "functions",
    operation_id = "getFunction",
    params(("function" = String, Path, description = "The function's id or name")),
    responses(
        (status = 200, description = "The function", body = FunctionView),
        (status = 404, description = "No such function, or not accessible"),
    ),
)]
async fn read(
    State(db): State<PgPool>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Json<FunctionView>> {
    let function = find(&db, &caller, &FunctionKey::parse(key), false).await?;
    Ok(Json(view(&db, function.id).await?.for_caller(&caller)))
}

/// Registers a function and queues the build of its first version (admins).
#[utoipa::path(
    post,
    path = "/functions",
    tag = "functions",
    operation_id = "createFunction",
    request_body = CreateFunction,
    responses(
        (status = 202, description = "Registered; its first version is PENDING", body = FunctionView),
        (status = 400, description = "An invalid or unknown field; an unknown user, group or environment"),
        (status = 409, description = "The name is taken"),
        (status = 413, description = "The source is over the limit"),
        (status = 415, description = "The body is not `application/json`"),
    ),
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(mut body): Json<CreateFunction>,
) -> Result<impl IntoResponse> {
    policy::may_create_functions(&caller)?;
    let config = &state.config;
    input::check_name(&body.name)?;
    let language = input::language(&body.language)?;
    input::check_source(&body.source, config)?;
    input::check_description(body.description.as_deref())?;
    let tags = body.tags.unwrap_or_default();
    input::check_tags(&tags)?;
    let execution_config =
        input::execution_config(ExecutionConfig::default(), body.execution_config, config)?;
    let semver = versions::first_semver(body.version.as_deref())?;
    let dependencies = body.dependencies.take().unwrap_or_default();
    dependencies::check(language, &dependencies).map_err(Error::BadRequest)?;
    let key = sources_key(config)?;

    let id = Uuid::now_v7();
    let mut tx = state.db.begin().await?;
    access::check(&mut tx, &mut body.allowed_users, &mut body.allowed_groups).await?;
    if let Some(environment_id) = body.environment_id {
        check_environment(&mut tx, environment_id).await?;
    }
    sqlx::query!(
        r#"
        insert into functions (id, name, language, description, tags, allowed_users, allowed_groups, environment_id)
        values ($1, $2, $3, $4, $5, $6, $7, $8)
        "#,
        id,
        body.name,
        language as Language,
        body.description,
        &tags,
        &body.allowed_users,
        &body.allowed_groups,
        body.environment_id,
    )
    .execute(&mut *tx)
    .await
    .map_err(error::unique("functions_name_key", || {
        format!("a function named {:?} already exists", body.name)
    }))?;
    insert_version(
        &mut tx,
        key,
        NewVersion {
            function_id: id,
            version: 1,
            semver: &semver,
            source: &body.source,
            execution_config: &execution_config,
            dependencies: &dependencies,
            lockfile: None,
        },
        crate::request_id(&headers),
    )
    .await?;
    audit::record(
        &mut tx,
        &caller,
        "function.create",
        ("function", id.to_string()),
        json!({
            "name": body.name,
            "language": language,
            "semver": semver,
            "dependencies": dependencies,
            "allowedUsers": body.allowed_users,
            "allowedGroups": body.allowed_groups,
            "environmentId": body.environment_id,
        }),
    )
    .await?;
    let webhook_secret = match body.webhook_url.as_deref() {
        Some(url) => crate::webhooks::set_url(&mut tx, config, id, Some(url)).await?,
        None => None,
    };
    let mut function = view(&mut *tx, id).await?;
    function.webhook_secret = webhook_secret;
    tx.commit().await?;
    tracing::info!(function_id = %id, name = %body.name, "function registered; compile queued");
    Ok((StatusCode::ACCEPTED, Json(function)))
}

/// Refuses a reference to an environment that does not exist.
async fn check_environment(tx: &mut sqlx::PgConnection, id: Uuid) -> Result<()> {
    let found = sqlx::query_scalar!("select id from environments where id = $1 for share", id)
        .fetch_optional(&mut *tx)
        .await?;
    found
        .map(|_| ())
        .ok_or_else(|| Error::BadRequest(format!("`environmentId` {id} is not an environment")))
}

/// The key sources and lockfiles are sealed with (docs/dependencies.md,
/// "Sources at rest"); the API does not start without it.
pub(crate) fn sources_key(config: &ApiConfig) -> Result<&SecretsKey> {
    config.secrets_key.as_ref().ok_or_else(|| {
        Error::NotConfigured(
            "function sources are stored encrypted and the operator has not set PLAT_SECRETS_KEY"
                .to_owned(),
        )
    })
}

/// A sealed part of version `version` of `function_id`, in clear. A value
/// that does not open (another key, or altered) is a 500 with the reason in
/// the log.
pub(crate) fn open_part(
    key: &SecretsKey,
    function_id: Uuid,
    version: i32,
    part: VersionPart,
    sealed: &[u8],
) -> Result<String> {
    let plain = key
        .open_bytes(part.owner(function_id, version), sealed)
        .map_err(|e| {
            anyhow::anyhow!("{part:?} of version {version} of function {function_id}: {e}")
        })?;
    String::from_utf8(plain).map_err(|_| {
        anyhow::anyhow!("{part:?} of version {version} of function {function_id} is not UTF-8")
            .into()
    })
}

/// A version to write.
struct NewVersion<'a> {
    function_id: Uuid,
    /// The running number: the newest one plus one.
    version: i32,
    /// Greater than every existing version's (see `versions::next_semver`).
    semver: &'a str,
    source: &'a str,
    execution_config: &'a ExecutionConfig,
    dependencies: &'a Dependencies,
    /// The lockfile to build with: the previous version's when the
    /// dependencies did not change, so a new version of the code does not
    /// quietly move its dependencies (as Cargo keeps Cargo.lock).
    lockfile: Option<&'a str>,
}

/// Writes a PENDING version, its source and lockfile sealed with `key`, and
/// queues its build, in the caller's transaction.
async fn insert_version(
    tx: &mut sqlx::PgConnection,
    key: &SecretsKey,
    new: NewVersion<'_>,
    request_id: Option<&str>,
) -> Result<()> {
    let source_sealed = key.seal_bytes(
        VersionPart::Source.owner(new.function_id, new.version),
        new.source.as_bytes(),
    );
    let lockfile_sealed = new.lockfile.map(|lockfile| {
        key.seal_bytes(
            VersionPart::Lockfile.owner(new.function_id, new.version),
            lockfile.as_bytes(),
        )
    });
    sqlx::query!(
        r#"
        insert into function_versions (function_id, version, semver, source_sealed,
                                       execution_config, dependencies, lockfile_sealed)
        values ($1, $2, $3, $4, $5, $6, $7)
        "#,
        new.function_id,
        new.version,
        new.semver,
        source_sealed,
        SqlJson(new.execution_config) as _,
        SqlJson(new.dependencies) as _,
        lockfile_sealed,
    )
    .execute(&mut *tx)
    .await
    // Cannot happen while the function row is locked and semvers only grow;
    // a 409 rather than a 500 if it ever does.
    .map_err(error::unique("function_versions_semver_key", || {
        format!("the function already has a version {}", new.semver)
    }))?;
    compile::enqueue(tx, new.function_id, new.version, request_id).await?;
    Ok(())
}

/// A new `source`, `executionConfig` or `version` makes a new version (built
/// from the newest version's values for whatever was not sent) and answers
/// 202; `description`, `tags`, permissions and `environmentId` alone change
/// the function in place and answer 200.
#[utoipa::path(
    put,
    path = "/functions/{function}",
    tag = "functions",
    operation_id = "updateFunction",
    params(("function" = String, Path, description = "The function's id or name")),
    request_body = UpdateFunction,
    responses(
        (status = 200, description = "Changed in place (no new version)", body = FunctionView),
        (status = 202, description = "A new version was made and its build queued", body = FunctionView),
        (status = 400, description = "An empty update, an invalid or unknown field"),
        (status = 404, description = "No such function, or not accessible"),
        (status = 409, description = "The `version` is not greater than the newest"),
        (status = 413, description = "The source is over the limit"),
        (status = 415, description = "The body is not `application/json`"),
    ),
)]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(key): Path<String>,
    Json(mut body): Json<UpdateFunction>,
) -> Result<impl IntoResponse> {
    let requested_semver = body.check(&state.config)?;
    let (sent, permissions_sent) = (body.sent(), body.changes_permissions());
    let mut tx = state.db.begin().await?;
    let key = FunctionKey::parse(key);
    let function = find(&mut *tx, &caller, &key, true).await?;
    policy::may_change_functions(&caller)?;
    let mut users = body.allowed_users.take().unwrap_or(function.allowed_users);
    let mut groups = body
        .allowed_groups
        .take()
        .unwrap_or(function.allowed_groups);
    access::check(&mut tx, &mut users, &mut groups).await?;
    if let Some(Some(environment_id)) = body.environment_id {
        check_environment(&mut tx, environment_id).await?;
    }
    let new_semver = if body.makes_a_version() {
        let change = VersionChange {
            source: body.source.take(),
            execution_config: body.execution_config.take(),
            semver: requested_semver,
            dependencies: body.dependencies.take(),
        };
        let request_id = crate::request_id(&headers);
        Some(
            add_version(
                &mut tx,
                function.id,
                &key,
                change,
                &state.config,
                request_id,
            )
            .await?,
        )
    } else {
        None
    };
    change_in_place(&mut tx, function.id, &body, &users, &groups).await?;
    let webhook_secret = match &body.webhook_url {
        Some(url) => {
            crate::webhooks::set_url(&mut tx, &state.config, function.id, url.as_deref()).await?
        }
        None => None,
    };
    let target = ("function", function.id.to_string());
    let changed: Vec<_> = sent
        .into_iter()
        .filter(|field| !matches!(*field, "allowedUsers" | "allowedGroups"))
        .collect();
    if !changed.is_empty() {
        let details = json!({ "changed": changed, "environmentId": body.environment_id, "semver": new_semver });
        audit::record(&mut tx, &caller, "function.update", target.clone(), details).await?;
    }
    if permissions_sent {
        let details = json!({ "allowedUsers": users, "allowedGroups": groups });
        audit::record(&mut tx, &caller, "function.permissions", target, details).await?;
    }
    let mut view = view(&mut *tx, function.id).await?;
    view.webhook_secret = webhook_secret;
    tx.commit().await?;
    let status = if new_semver.is_some() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// What an update changes of the newest version's values.
struct VersionChange {
    source: Option<String>,
    execution_config: Option<input::ExecutionConfigInput>,
    /// The whole new set; absent keeps the newest version's.
    dependencies: Option<Dependencies>,
    /// The semantic version asked for; the next patch if none.
    semver: Option<semver::Version>,
}

/// Writes the function's next version from the newest one with `change`,
/// and queues its build; returns its semantic version.
async fn add_version(
    tx: &mut sqlx::PgConnection,
    function_id: Uuid,
    key: &FunctionKey,
    change: VersionChange,
    config: &ApiConfig,
    request_id: Option<&str>,
) -> Result<String> {
    // The newest version has the greatest semver: every version was
    // checked against it when written, under the function's row lock.
    let latest = sqlx::query!(
        r#"
        select v.version, v.semver, v.source, v.source_sealed, v.lockfile_sealed,
               f.language as "language: Language",
               v.dependencies as "dependencies: SqlJson<Dependencies>",
               v.execution_config as "execution_config: SqlJson<ExecutionConfig>"
        from functions f join function_versions v on v.function_id = f.id and v.version = f.latest_version
        where f.id = $1
        "#,
        function_id
    )
    .fetch_one(&mut *tx)
    .await?;
    let secrets = sources_key(config)?;
    let semver = versions::next_semver(change.semver.as_ref(), &latest.semver, key)?;
    let execution_config =
        input::execution_config(latest.execution_config.0, change.execution_config, config)?;
    let dependencies = match change.dependencies {
        Some(dependencies) => {
            dependencies::check(latest.language, &dependencies).map_err(Error::BadRequest)?;
            dependencies
        }
        None => latest.dependencies.0.clone(),
    };
    let open = |part, sealed: &[u8]| open_part(secrets, function_id, latest.version, part, sealed);
    let source = match (change.source, &latest.source_sealed) {
        (Some(source), _) => source,
        (None, Some(sealed)) => open(VersionPart::Source, sealed)?,
        (None, None) => latest.source.clone().unwrap_or_default(),
    };
    let lockfile = match &latest.lockfile_sealed {
        Some(sealed) if dependencies == latest.dependencies.0 => {
            Some(open(VersionPart::Lockfile, sealed)?)
        }
        _ => None,
    };
    let version = latest.version + 1;
    let new = NewVersion {
        function_id,
        version,
        semver: &semver,
        source: &source,
        execution_config: &execution_config,
        dependencies: &dependencies,
        lockfile: lockfile.as_deref(),
    };
    insert_version(tx, secrets, new, request_id).await?;
    sqlx::query!(
        "update functions set latest_version = $2 where id = $1",
        function_id,
        version
    )
    .execute(&mut *tx)
    .await?;
    tracing::info!(%function_id, version, %semver, "new version; compile queued");
    Ok(semver)
}

/// Writes what `body` changes on the function itself: description, tags,
/// permissions (`users`, `groups`, checked) and environment.
async fn change_in_place(
    tx: &mut sqlx::PgConnection,
    function_id: Uuid,
    body: &UpdateFunction,
    users: &[Uuid],
    groups: &[Uuid],
) -> Result<()> {
    sqlx::query!(
        r#"
        update functions
        set description = coalesce($2, description), tags = coalesce($3, tags),
            allowed_users = $4, allowed_groups = $5,
            environment_id = case when $6 then $7 else environment_id end,
            updated_at = now()
        where id = $1
        "#,
        function_id,
        body.description,
        body.tags.as_deref(),
        users,
        groups,
        body.environment_id.is_some(),
        body.environment_id.flatten(),
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Deletes the function, its versions and pending builds, and cancels its
/// queued executions. Its execution history stays readable by execution id;
/// executions already running finish and are recorded.
#[utoipa::path(
    delete,
    path = "/functions/{function}",
    tag = "functions",
    operation_id = "deleteFunction",
    params(("function" = String, Path, description = "The function's id or name")),
    responses(
        (status = 204, description = "Deleted; its queued executions are CANCELLED"),
        (status = 404, description = "No such function, or not accessible"),
    ),
)]
async fn remove(
    State(db): State<PgPool>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<StatusCode> {
    let mut tx = db.begin().await?;
    let function = find(&mut *tx, &caller, &FunctionKey::parse(key), true).await?;
    policy::may_delete_functions(&caller)?;
    let cancelled =
        plat_common::queue::execute::cancel_queued_of_function(&mut tx, function.id).await?;
    sqlx::query!("delete from functions where id = $1", function.id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        &caller,
        "function.delete",
        ("function", function.id.to_string()),
        json!({ "cancelledExecutions": cancelled }),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(function_id = %function.id, cancelled, "function deleted");
    Ok(StatusCode::NO_CONTENT)
}
