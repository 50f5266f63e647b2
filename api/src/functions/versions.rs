//! A function's versions: listing and reading them, making one active again
//! (rollback) and deprecating them; the semantic version rules; and the
//! deprecation headers on runs of a deprecated version.
//!
//! - `GET /functions/{f}/versions`, `GET /functions/{f}/versions/{v}`
//! - `POST /functions/{f}/rollback` `{"version": "1.0.0" | 3}`
//! - `POST /functions/{f}/versions/{v}/deprecate` `{"message": "..."}`
//! - `DELETE /functions/{f}/versions/{v}/deprecation`
//! - `POST /functions/{f}/versions/{v}/retire`: for good
//!
//! `{v}` is the running number (`3`) or the semantic version (`1.2.0`).
//! Semantic versions only grow (see [`next_semver`]), so the running number
//! and the semantic version order versions the same way.

use std::cmp::Ordering;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use chrono::{DateTime, Utc};
use plat_common::dependencies::Dependencies;
use plat_common::secrets::{SecretsKey, VersionPart};
use plat_common::{ExecutionConfig, VersionStatus};
use semver::Version;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::types::Json as SqlJson;
use sqlx::{PgExecutor, PgPool};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{find, open_part, sources_key, view, FunctionKey, FunctionView};
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::extract::{Json, Path};
use crate::policy;
use crate::{audit, AppState};

/// The semantic version of a function's first version when none is sent.
const FIRST_SEMVER: Version = Version::new(0, 1, 0);
const MAX_SEMVER_CHARS: usize = 128;
const MAX_DEPRECATION_MESSAGE_CHARS: usize = 500;
/// RFC 9745: `Deprecation: @<unix seconds>`, when the version was deprecated.
static DEPRECATION: HeaderName = HeaderName::from_static("deprecation");
/// Why, and what to use instead: the deprecation message, percent-encoded.
static DEPRECATION_MESSAGE: HeaderName = HeaderName::from_static("plat-deprecation-message");

pub fn router() -> crate::openapi::ApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(read))
        .routes(routes!(rollback))
        .routes(routes!(deprecate))
        .routes(routes!(undeprecate))
        .routes(routes!(retire))
}

/// Parses a client's semantic version (SemVer 2.0.0, no leading `v`).
pub fn parse_semver(text: &str) -> Result<Version> {
    let invalid = |reason: String| {
        Error::BadRequest(format!(
            "`version` must be a semantic version such as 1.2.0 (https://semver.org); {text:?} is not: {reason}"
        ))
    };
    if text.chars().count() > MAX_SEMVER_CHARS {
        return Err(invalid(format!(
            "longer than {MAX_SEMVER_CHARS} characters"
        )));
    }
    Version::parse(text).map_err(|e| invalid(e.to_string()))
}

/// The semantic version of a new function's first version.
pub fn first_semver(requested: Option<&str>) -> Result<String> {
    Ok(requested
        .map(parse_semver)
        .transpose()?
        .unwrap_or(FIRST_SEMVER)
        .to_string())
}

/// The semantic version of a function's next version, given its newest
/// (and so greatest) one: `requested` if it is strictly greater by SemVer
/// precedence (build metadata does not count), else 409. Without one, the
/// next patch: `1.2.3` → `1.2.4`, and a pre-release becomes its release
/// (`1.3.0-rc.1` → `1.3.0`), as `npm version patch` does.
pub fn next_semver(
    requested: Option<&Version>,
    newest: &str,
    function: &FunctionKey,
) -> Result<String> {
    let newest = Version::parse(newest)
        .map_err(|e| anyhow::anyhow!("stored semver {newest:?} does not parse: {e}"))?;
    match requested {
        Some(requested) if requested.cmp_precedence(&newest) == Ordering::Greater => {
            Ok(requested.to_string())
        }
        Some(requested) => Err(Error::Conflict(format!(
            "version {requested} is not greater than {newest}, the newest version of function {function}; a new version needs a greater semantic version"
        ))),
        None if !newest.pre.is_empty() => {
            Ok(Version::new(newest.major, newest.minor, newest.patch).to_string())
        }
        None => newest
            .patch
            .checked_add(1)
            .map(|patch| Version::new(newest.major, newest.minor, patch).to_string())
            .ok_or_else(|| {
                Error::Conflict(format!(
                    "the patch number of {newest} cannot grow; send a `version`"
                ))
            }),
    }
}

/// How a URL or body names a version: by running number or semantic version.
#[derive(Debug, Clone)]
pub struct VersionKey {
    /// As the client sent it, for messages.
    raw: String,
    number: Option<i32>,
    /// Canonical, as stored; with build metadata only if the client sent it.
    semver: Option<String>,
}

impl VersionKey {
    /// Anything that is neither a number nor a semantic version names no
    /// version (404), like a number or semver the function does not have.
    pub fn parse(raw: String) -> Self {
        let number = raw
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| raw.parse().ok())
            .flatten();
        let semver = number
            .is_none()
            .then(|| Version::parse(&raw).ok().map(|v| v.to_string()))
            .flatten();
        Self {
            raw,
            number,
            semver,
        }
    }

    pub fn not_found(&self, function: &FunctionKey) -> Error {
        Error::NotFound(format!("function {function} has no version {}", self.raw))
    }

    /// The parameters of the checked statements that pick the version
    /// `key` names; `None`: the active version. Those statements match
    /// `v.version = number or v.semver = semver or split_part(v.semver,
    /// '+', 1) = semver or (active and v.version = f.active_version)`: at
    /// most one of the three is set, so one statement serves every kind of
    /// key (and a key that is neither number nor semver matches nothing).
    /// A semver without build metadata also finds a version stored with
    /// some (`1.2.0` finds `1.2.0+build.5`): precedence is unique per
    /// function, so it is never ambiguous.
    pub fn pick(key: Option<&Self>) -> VersionPick<'_> {
        VersionPick {
            number: key.and_then(|k| k.number),
            semver: key.and_then(|k| k.semver.as_deref()),
            active: key.is_none(),
        }
    }
}

/// See [`VersionKey::pick`].
pub struct VersionPick<'a> {
    pub number: Option<i32>,
    pub semver: Option<&'a str>,
    pub active: bool,
}

/// A version as sent in a body: `3` or `"1.2.0"` (or `"3"`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
enum VersionInput {
    Number(i64),
    Text(String),
}

impl From<VersionInput> for VersionKey {
    fn from(input: VersionInput) -> Self {
        match input {
            VersionInput::Number(n) => VersionKey::parse(n.to_string()),
            VersionInput::Text(text) => VersionKey::parse(text),
        }
    }
}

/// Since when and why the version a run uses is deprecated.
pub struct Deprecation<'a> {
    pub at: DateTime<Utc>,
    pub message: &'a str,
}

impl Deprecation<'_> {
    /// Adds `Deprecation: @<unix seconds>` (RFC 9745) and
    /// `Plat-Deprecation-Message` to a response.
    pub fn add_to(&self, headers: &mut HeaderMap) {
        if let Ok(at) = HeaderValue::from_str(&format!("@{}", self.at.timestamp())) {
            headers.insert(DEPRECATION.clone(), at);
        }
        if let Ok(message) = HeaderValue::from_str(&header_safe(self.message)) {
            headers.insert(DEPRECATION_MESSAGE.clone(), message);
        }
    }
}

/// `text` with every byte outside printable ASCII (0x20–0x7E), and `%`
/// itself, percent-encoded (of its UTF-8): always a valid header value, and
/// standard percent-decoding gives the text back.
fn header_safe(text: &str) -> String {
    let mut safe = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            safe.push(char::from(byte));
        } else {
            safe.push_str(&format!("%{byte:02X}"));
        }
    }
    safe
}

/// A version as the API shows it; `source` only when one version is read.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionView {
    version: i32,
    semver: String,
    status: VersionStatus,
    compile_error: Option<String>,
    /// `Json` so that `query_as!` decodes the column into it directly.
    #[schema(value_type = crate::openapi::ExecutionConfig)]
    execution_config: SqlJson<ExecutionConfig>,
    module_sha256: Option<String>,
    compile_duration_ms: Option<i32>,
    created_at: DateTime<Utc>,
    compiled_at: Option<DateTime<Utc>>,
    /// The version runs execute now.
    active: bool,
    deprecated: bool,
    deprecated_at: Option<DateTime<Utc>>,
    deprecation_message: Option<String>,
    /// A retired version never runs again (nor becomes active).
    retired: bool,
    retired_at: Option<DateTime<Utc>>,
    /// What the version declares it depends on (docs/dependencies.md).
    #[schema(value_type = std::collections::BTreeMap<String, plat_common::dependencies::DependencySpec>)]
    dependencies: SqlJson<Dependencies>,
    /// What its build reported without failing (advisories under the
    /// operator's `warn` policy).
    build_warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    /// The lockfile its dependencies resolved to (Cargo.lock, or Plat's npm
    /// lock as JSON), only when one version is read; absent before it is
    /// built and for a version without dependencies.
    #[serde(skip_serializing_if = "Option::is_none")]
    lockfile: Option<String>,
    #[serde(skip)]
    source_sealed: Option<Vec<u8>>,
    #[serde(skip)]
    lockfile_sealed: Option<Vec<u8>>,
}

impl VersionView {
    /// The view as `caller` may see it (see [`super::hide_values`]).
    fn for_caller(mut self, caller: &Caller) -> Self {
        super::hide_values(&mut self.execution_config, caller);
        self
    }

    /// Opens the sealed source and lockfile read with it, for its reader.
    fn opened(mut self, key: &SecretsKey, function_id: Uuid) -> Result<Self> {
        let open = |part, sealed: &[u8]| open_part(key, function_id, self.version, part, sealed);
        if let Some(sealed) = &self.source_sealed {
            self.source = Some(open(VersionPart::Source, sealed)?);
        }
        if let Some(sealed) = &self.lockfile_sealed {
            self.lockfile = Some(open(VersionPart::Lockfile, sealed)?);
        }
        Ok(self)
    }
}

/// `query_as!` of [`VersionView`]s, the versions `v` of the function `f`:
/// the columns, then `$tail` (a string literal: the `where` and `order
/// by`, which may use `$with_source` for `source` and the rest of the
/// arguments). A macro because a checked statement must be one literal.
macro_rules! select_versions {
    ($tail:literal, $with_source:expr $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            VersionView,
            r#"
            select v.version, v.semver, v.status as "status: VersionStatus", v.compile_error,
                   v.execution_config as "execution_config: SqlJson<ExecutionConfig>",
                   v.module_sha256, v.compile_duration_ms, v.created_at, v.compiled_at,
                   coalesce(v.version = f.active_version, false) as "active!",
                   v.deprecated_at is not null as "deprecated!", v.deprecated_at,
                   v.deprecation_message,
                   v.retired_at is not null as "retired!", v.retired_at,
                   v.dependencies as "dependencies: SqlJson<Dependencies>", v.build_warnings,
                   case when $1 then v.source end as source,
                   case when $1 then v.source_sealed end as source_sealed,
                   case when $1 then v.lockfile_sealed end as lockfile_sealed,
                   null::text as lockfile
            from function_versions v join functions f on f.id = v.function_id
            "# + $tail,
            $with_source
            $(, $arg)*
        )
    };
}

/// Reads the version `key` names of the function `function_id`.
async fn fetch(
    db: impl PgExecutor<'_>,
    function_id: Uuid,
    key: &VersionKey,
    with_source: bool,
) -> Result<Option<VersionView>> {
    let pick = VersionKey::pick(Some(key));
    Ok(select_versions!(
        r#"
        where v.function_id = $2
          and (v.version = $3 or v.semver = $4 or split_part(v.semver, '+', 1) = $4)
        "#,
        with_source,
        function_id,
        pick.number,
        pick.semver,
    )
    .fetch_optional(db)
    .await?)
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct VersionList {
    /// Newest first.
    items: Vec<VersionView>,
    active_version: Option<i32>,
}

/// Every version of the function, newest first, without their sources.
#[utoipa::path(
    get,
    path = "/functions/{function}/versions",
    tag = "versions",
    operation_id = "listVersions",
    params(
        ("function" = String, Path, description = "The function's id or name"),
    ),
    responses(
        (status = 200, description = "Every version, newest first, without sources", body = VersionList),
        (status = 404, description = "No such function, or not accessible"),
    ),
)]
async fn list(
    State(db): State<PgPool>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Json<VersionList>> {
    let function = find(&db, &caller, &FunctionKey::parse(key), false).await?;
    let items = select_versions!(
        "where v.function_id = $2 order by v.version desc",
        false,
        function.id
    )
    .fetch_all(&db)
    .await?;
    let items: Vec<VersionView> = items.into_iter().map(|v| v.for_caller(&caller)).collect();
    // From the same snapshot as the items' `active`.
    let active_version = items.iter().find(|v| v.active).map(|v| v.version);
    Ok(Json(VersionList {
        items,
        active_version,
    }))
}

/// One version, with its source.
#[utoipa::path(
    get,
    path = "/functions/{function}/versions/{version}",
    tag = "versions",
    operation_id = "getVersion",
    params(
        ("function" = String, Path, description = "The function's id or name"),
        ("version" = String, Path, description = "The running number (`3`) or the semantic version (`1.2.0`)"),
    ),
    responses(
        (status = 200, description = "The version, with its source", body = VersionView),
        (status = 404, description = "No such function or version, or not accessible"),
    ),
)]
async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path((key, version)): Path<(String, String)>,
) -> Result<Json<VersionView>> {
    let (key, version) = (FunctionKey::parse(key), VersionKey::parse(version));
    let function = find(&state.db, &caller, &key, false).await?;
    let found = fetch(&state.db, function.id, &version, true)
        .await?
        .ok_or_else(|| version.not_found(&key))?;
    let opened = found.opened(sources_key(&state.config)?, function.id)?;
    Ok(Json(opened.for_caller(&caller)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    version: VersionInput,
}

/// Makes a READY version the active one, without building anything. A
/// version newer than it that becomes READY later takes over again (the
/// compiler keeps "newest READY wins"); see docs/versions-and-discovery.md.
#[utoipa::path(
    post,
    path = "/functions/{function}/rollback",
    tag = "versions",
    operation_id = "rollbackFunction",
    params(
        ("function" = String, Path, description = "The function's id or name"),
    ),
    request_body = RollbackBody,
    responses(
        (status = 200, description = "The function, with the version active", body = FunctionView),
        (status = 400, description = "A malformed body"),
        (status = 404, description = "No such function or version, or not accessible"),
        (status = 409, description = "The version is not READY, or is retired (`version-retired`)"),
        (status = 415, description = "The body is not `application/json`"),
    ),
)]
async fn rollback(
    State(db): State<PgPool>,
    caller: Caller,
    Path(key): Path<String>,
    Json(body): Json<RollbackBody>,
) -> Result<Json<FunctionView>> {
    let (key, target) = (FunctionKey::parse(key), VersionKey::from(body.version));
    let mut tx = db.begin().await?;
    // The row lock orders this against builds finishing and other changes.
    let function = find(&mut *tx, &caller, &key, true).await?;
    policy::may_roll_back_functions(&caller)?;
    let version = fetch(&mut *tx, function.id, &target, false)
        .await?
        .ok_or_else(|| target.not_found(&key))?;
    if version.retired {
        return Err(Error::VersionRetired(format!(
            "version {} ({}) of function {key} is retired; a retired version never becomes active again",
            version.semver, version.version
        )));
    }
    if version.status != VersionStatus::Ready {
        return Err(Error::Conflict(format!(
            "version {} ({}) of function {key} is {}; only a READY version can be made active",
            version.semver, version.version, version.status
        )));
    }
    let from = sqlx::query_scalar!(
        r#"
        select case when av.version is null then null
                    else jsonb_build_object('version', av.version, 'semver', av.semver) end
        from functions f
        left join function_versions av on av.function_id = f.id and av.version = f.active_version
        where f.id = $1
        "#,
        function.id
    )
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query!(
        "update functions set active_version = $2, updated_at = now() where id = $1",
        function.id,
        version.version
    )
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        &caller,
        "function.rollback",
        ("function", function.id.to_string()),
        json!({
            "from": from,
            "to": { "version": version.version, "semver": version.semver },
        }),
    )
    .await?;
    let function_view = view(&mut *tx, function.id).await?;
    tx.commit().await?;
    tracing::info!(function_id = %function.id, version = version.version, semver = %version.semver, "active version set");
    Ok(Json(function_view))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DeprecateBody {
    message: String,
}

/// Marks a version deprecated with a message (1 to 500 characters, trimmed).
/// It keeps running; its runs' responses carry the deprecation headers. A
/// second call replaces the message and keeps the original date.
#[utoipa::path(
    post,
    path = "/functions/{function}/versions/{version}/deprecate",
    tag = "versions",
    operation_id = "deprecateVersion",
    params(
        ("function" = String, Path, description = "The function's id or name"),
        ("version" = String, Path, description = "The running number (`3`) or the semantic version (`1.2.0`)"),
    ),
    request_body = DeprecateBody,
    responses(
        (status = 200, description = "The version, deprecated", body = VersionView),
        (status = 400, description = "A malformed body or message"),
        (status = 404, description = "No such function or version, or not accessible"),
        (status = 415, description = "The body is not `application/json`"),
    ),
)]
async fn deprecate(
    State(db): State<PgPool>,
    caller: Caller,
    Path((key, version)): Path<(String, String)>,
    Json(body): Json<DeprecateBody>,
) -> Result<Json<VersionView>> {
    let message = body.message.trim();
    let length = message.chars().count();
    if !(1..=MAX_DEPRECATION_MESSAGE_CHARS).contains(&length) || message.contains('\0') {
        return Err(Error::BadRequest(format!(
            "`message` must be 1 to {MAX_DEPRECATION_MESSAGE_CHARS} characters (not counting surrounding whitespace), without NUL; got {length}"
        )));
    }
    set_deprecation(db, caller, key, version, Some(message)).await
}

/// Lifts a version's deprecation; a version that is not deprecated stays so.
#[utoipa::path(
    delete,
    path = "/functions/{function}/versions/{version}/deprecation",
    tag = "versions",
    operation_id = "undeprecateVersion",
    params(
        ("function" = String, Path, description = "The function's id or name"),
        ("version" = String, Path, description = "The running number (`3`) or the semantic version (`1.2.0`)"),
    ),
    responses(
        (status = 200, description = "The version, no longer deprecated", body = VersionView),
        (status = 404, description = "No such function or version, or not accessible"),
    ),
)]
async fn undeprecate(
    State(db): State<PgPool>,
    caller: Caller,
    Path((key, version)): Path<(String, String)>,
) -> Result<Json<VersionView>> {
    set_deprecation(db, caller, key, version, None).await
}

async fn set_deprecation(
    db: PgPool,
    caller: Caller,
    key: String,
    version: String,
    message: Option<&str>,
) -> Result<Json<VersionView>> {
    let (key, version) = (FunctionKey::parse(key), VersionKey::parse(version));
    let mut tx = db.begin().await?;
    let function = find(&mut *tx, &caller, &key, false).await?;
    policy::may_deprecate_versions(&caller)?;
    let pick = VersionKey::pick(Some(&version));
    let changed = sqlx::query!(
        r#"
        update function_versions v
        set deprecated_at = case when $4::text is null then null else coalesce(v.deprecated_at, now()) end,
            deprecation_message = $4, updated_at = now()
        where v.function_id = $1
          and (v.version = $2 or v.semver = $3 or split_part(v.semver, '+', 1) = $3)
        returning v.version, v.semver
        "#,
        function.id,
        pick.number,
        pick.semver,
        message,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let (number, semver) = changed
        .map(|row| (row.version, row.semver))
        .ok_or_else(|| version.not_found(&key))?;
    let (action, details) = match message {
        Some(message) => (
            "function.deprecate",
            json!({ "version": number, "semver": semver, "message": message }),
        ),
        None => (
            "function.undeprecate",
            json!({ "version": number, "semver": semver }),
        ),
    };
    audit::record(
        &mut tx,
        &caller,
        action,
        ("function", function.id.to_string()),
        details,
    )
    .await?;
    let by_number = VersionKey::parse(number.to_string());
    let version_view = fetch(&mut *tx, function.id, &by_number, false)
        .await?
        .ok_or_else(|| version.not_found(&key))?;
    tx.commit().await?;
    Ok(Json(version_view))
}

/// Retires a version for good (admins): it never runs again. Runs of it
/// are refused (`409 version-retired`), its executions still queued are
/// CANCELLED, a rollback to it is refused, and it stays in the history. The
/// active version cannot be retired (make another one active first), nor
/// one still building. Retiring a retired version changes nothing.
#[utoipa::path(
    post,
    path = "/functions/{function}/versions/{version}/retire",
    tag = "versions",
    operation_id = "retireVersion",
    params(
        ("function" = String, Path, description = "The function's id or name"),
        ("version" = String, Path, description = "The running number (`3`) or the semantic version (`1.2.0`)"),
    ),
    responses(
        (status = 200, description = "The version, retired", body = VersionView),
        (status = 403, description = "The caller is not an admin"),
        (status = 404, description = "No such function or version, or not accessible"),
        (status = 409, description = "It is the active version, or its build has not finished"),
    ),
)]
async fn retire(
    State(db): State<PgPool>,
    caller: Caller,
    Path((key, version)): Path<(String, String)>,
) -> Result<Json<VersionView>> {
    let (key, version) = (FunctionKey::parse(key), VersionKey::parse(version));
    let mut tx = db.begin().await?;
    // The row lock orders this against rollbacks and builds finishing, which
    // change the active version.
    let function = find(&mut *tx, &caller, &key, true).await?;
    policy::may_retire_versions(&caller)?;
    let found = fetch(&mut *tx, function.id, &version, false)
        .await?
        .ok_or_else(|| version.not_found(&key))?;
    if found.retired {
        tx.rollback().await?;
        return Ok(Json(found));
    }
    if found.active {
        return Err(Error::Conflict(format!(
            "version {} ({}) is the active version of function {key}; make another version active first (POST /functions/{key}/rollback, or deploy a new one)",
            found.semver, found.version
        )));
    }
    if !found.status.is_built() {
        return Err(Error::Conflict(format!(
            "version {} ({}) of function {key} is {}; wait until its build finishes",
            found.semver, found.version, found.status
        )));
    }
    sqlx::query!(
        "update function_versions set retired_at = now(), updated_at = now() where function_id = $1 and version = $2",
        function.id,
        found.version
    )
    .execute(&mut *tx)
    .await?;
    let cancelled = plat_common::queue::execute::cancel_queued_of_version(
        &mut tx,
        function.id,
        found.version,
        &format!(
            "version {} ({}) was retired before this execution ran; retired versions never run",
            found.version, found.semver
        ),
    )
    .await?;
    audit::record(
        &mut tx,
        &caller,
        "function.retire",
        ("function", function.id.to_string()),
        json!({ "version": found.version, "semver": found.semver, "cancelledExecutions": cancelled }),
    )
    .await?;
    let by_number = VersionKey::parse(found.version.to_string());
    let retired = fetch(&mut *tx, function.id, &by_number, false)
        .await?
        .ok_or_else(|| version.not_found(&key))?;
    tx.commit().await?;
    tracing::info!(function_id = %function.id, version = found.version, cancelled, "version retired");
    Ok(Json(retired))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FunctionKey {
        FunctionKey::parse("f".to_owned())
    }

    #[test]
    fn a_new_semver_must_be_greater_by_precedence() {
        let next = |requested: &str, newest: &str| {
            next_semver(Some(&Version::parse(requested).unwrap()), newest, &key())
        };

        assert_eq!(next("1.2.1", "1.2.0").unwrap(), "1.2.1");
        assert_eq!(next("1.2.0", "1.2.0-rc.1").unwrap(), "1.2.0");
        assert!(next("1.2.0", "1.2.0").is_err());
        assert!(next("1.1.9", "1.2.0").is_err());
        assert!(next("1.2.0+b2", "1.2.0+b1").is_err());
    }

    #[test]
    fn without_a_semver_the_patch_grows_and_a_pre_release_is_released() {
        assert_eq!(next_semver(None, "1.2.3", &key()).unwrap(), "1.2.4");
        assert_eq!(next_semver(None, "1.3.0-rc.1", &key()).unwrap(), "1.3.0");
        assert_eq!(next_semver(None, "0.0.7+build", &key()).unwrap(), "0.0.8");
        assert_eq!(first_semver(None).unwrap(), "0.1.0");
        assert!(first_semver(Some("1.2")).is_err());
        assert!(first_semver(Some("v1.2.0")).is_err());
    }

    #[test]
    fn a_version_key_is_a_number_a_semver_or_nothing() {
        let number = VersionKey::parse("3".to_owned());
        let semver = VersionKey::parse("1.2.0".to_owned());
        let neither = VersionKey::parse("latest".to_owned());

        assert_eq!(number.number, Some(3));
        assert_eq!(semver.semver.as_deref(), Some("1.2.0"));
        let picks_nothing = VersionKey::pick(Some(&neither));
        assert_eq!(
            (
                picks_nothing.number,
                picks_nothing.semver,
                picks_nothing.active
            ),
            (None, None, false)
        );
        assert!(VersionKey::pick(None).active);
    }

    #[test]
    fn deprecation_messages_become_valid_header_values() {
        let encoded = header_safe("use 2.x — 100% faster\n");

        assert_eq!(encoded, "use 2.x %E2%80%94 100%25 faster%0A");
        assert!(HeaderValue::from_str(&encoded).is_ok());
    }
}
