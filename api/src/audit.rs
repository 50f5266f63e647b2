//! The audit log: who did what to which resource, when and from where.
//! Rows are written in the same transaction as the change they record, so
//! the log never claims a change that did not happen nor misses one that
//! did. `details` says what changed, never a password, key or secret value.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::Result;
use crate::extract::{Json, Query};
use crate::pagination::{Page, Position};
use crate::policy;

pub fn router() -> crate::openapi::ApiRouter {
    OpenApiRouter::new().routes(routes!(list))
}

/// Who acted, when it was not a signed-in caller (failed logins).
pub struct Anonymous<'a> {
    pub email: Option<&'a str>,
    pub source_address: Option<&'a str>,
}

/// The names of the fields a request sent, in the order given: what an
/// update's audit row lists as `changed`.
pub fn sent_fields<const N: usize>(fields: [(&'static str, bool); N]) -> Vec<&'static str> {
    fields
        .into_iter()
        .filter_map(|(field, sent)| sent.then_some(field))
        .collect()
}

/// Records `action` on the target by `caller`, in the caller's transaction.
pub async fn record(
    tx: &mut PgConnection,
    caller: &Caller,
    action: &str,
    target: (&str, String),
    details: Value,
) -> Result<()> {
    insert(
        tx,
        Some(caller.user_id),
        Some(&caller.email),
        caller.source_address.as_deref(),
        action,
        Some(target),
        details,
    )
    .await
}

/// Records an action with no signed-in actor.
pub async fn record_anonymous(
    db: &mut PgConnection,
    who: Anonymous<'_>,
    action: &str,
    target: Option<(&str, String)>,
    details: Value,
) -> Result<()> {
    insert(
        db,
        None,
        who.email,
        who.source_address,
        action,
        target,
        details,
    )
    .await
}

async fn insert(
    db: &mut PgConnection,
    actor_id: Option<Uuid>,
    actor_email: Option<&str>,
    source_address: Option<&str>,
    action: &str,
    target: Option<(&str, String)>,
    details: Value,
) -> Result<()> {
    let (target_type, target_id) = target.unzip();
    sqlx::query!(
        r#"
        insert into audit_log (id, actor_id, actor_email, action, target_type, target_id, source_address, details)
        values ($1, $2, $3, $4, $5, $6, $7, $8)
        "#,
        Uuid::now_v7(),
        actor_id,
        actor_email,
        action,
        target_type,
        target_id,
        source_address,
        details,
    )
    .execute(db)
    .await?;
    Ok(())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct AuditEntry {
    id: Uuid,
    at: DateTime<Utc>,
    actor_id: Option<Uuid>,
    actor_email: Option<String>,
    action: String,
    target_type: Option<String>,
    target_id: Option<String>,
    source_address: Option<String>,
    details: Value,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    action: Option<String>,
    actor_id: Option<Uuid>,
    target_type: Option<String>,
    target_id: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    /// 1 to 100; 20 if not sent.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct AuditList {
    items: Vec<AuditEntry>,
    next_cursor: Option<String>,
}

/// `GET /audit`, admins only: newest first, filtered by any of `action`,
/// `actorId`, `targetType`, `targetId` and the time range `from` ≤ at < `to`.
/// The audit log, newest first (admins).
#[utoipa::path(
    get,
    path = "/audit",
    tag = "operations",
    operation_id = "listAudit",
    params(AuditParams),
    responses(
        (status = 200, description = "A page of entries; `nextCursor` is null on the last page", body = AuditList),
        (status = 400, description = "An invalid parameter or cursor"),
    ),
)]
async fn list(
    State(db): State<PgPool>,
    caller: Caller,
    Query(params): Query<AuditParams>,
) -> Result<Json<AuditList>> {
    policy::may_read_audit_log(&caller)?;
    let page = Page::parse(params.limit, params.cursor.as_deref())?;
    let rows = sqlx::query_as!(
        AuditEntry,
        r#"
        select id, at, actor_id, actor_email, action, target_type, target_id, source_address, details
        from audit_log
        where ($1::text is null or action = $1)
          and ($2::uuid is null or actor_id = $2)
          and ($3::text is null or target_type = $3)
          and ($4::text is null or target_id = $4)
          and ($5::timestamptz is null or at >= $5)
          and ($6::timestamptz is null or at < $6)
          and ($7::timestamptz is null or (at, id) < ($7, $8))
        order by at desc, id desc
        limit $9
        "#,
        params.action,
        params.actor_id,
        params.target_type,
        params.target_id,
        params.from,
        params.to,
        page.after_created_at(),
        page.after_id(),
        page.fetch_limit(),
    )
    .fetch_all(&db)
    .await?;
    let (items, next_cursor) = page.finish(rows, |entry| Position {
        created_at: entry.at,
        id: entry.id,
    });
    Ok(Json(AuditList { items, next_cursor }))
}
