//! `/groups` and their members, admins only. A group is a named set of users
//! that access lists of functions and environments can name.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgExecutor;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::access::{self, List};
use crate::audit;
use crate::auth::{self, Caller};
use crate::error::{self, Error, Result};
use crate::extract::{Json, Path};
use crate::policy;
use crate::AppState;

const MAX_NAME_CHARS: usize = 64;

pub fn router() -> crate::openapi::ApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, rename, remove))
        .routes(routes!(members, add_member))
        .routes(routes!(remove_member))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct GroupView {
    id: Uuid,
    name: String,
    members: Vec<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// `query_as!` of [`GroupView`]s of the groups `g`, then `$tail` (a
/// string literal: `where`, `order by`) with its arguments. A macro because
/// a checked statement must be one literal.
macro_rules! select_groups {
    ($tail:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            GroupView,
            r#"
            select g.id, g.name, g.created_at, g.updated_at,
                   array(select m.user_id from group_members m where m.group_id = g.id order by m.added_at, m.user_id) as "members!"
            from groups g
            "# + $tail
            $(, $arg)*
        )
    };
}

async fn view(db: impl PgExecutor<'_>, id: Uuid) -> Result<GroupView> {
    select_groups!("where g.id = $1", id)
        .fetch_optional(db)
        .await?
        .ok_or_else(|| not_found(id))
}

fn not_found(id: Uuid) -> Error {
    Error::NotFound(format!("no group with id {id}"))
}

fn check_name(name: &str) -> Result<()> {
    let valid = !name.trim().is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && !name.chars().any(char::is_control);
    if valid {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "`name` must be 1 to {MAX_NAME_CHARS} characters, not blank, without control characters"
        )))
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct GroupList {
    items: Vec<GroupView>,
}

/// Every group (admins).
#[utoipa::path(
    get,
    path = "/groups",
    tag = "groups",
    operation_id = "listGroups",
    responses(
        (status = 200, description = "The groups", body = GroupList),
    ),
)]
async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<GroupList>> {
    policy::may_list_groups(&caller)?;
    let items = select_groups!("order by g.name")
        .fetch_all(&state.db)
        .await?;
    Ok(Json(GroupList { items }))
}

#[utoipa::path(
    get,
    path = "/groups/{id}",
    tag = "groups",
    operation_id = "getGroup",
    params(("id" = uuid::Uuid, Path, description = "The group's id")),
    responses(
        (status = 200, description = "The group", body = GroupView),
        (status = 400, description = "The id is not a UUID"),
        (status = 404, description = "No such group"),
    ),
)]
async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<GroupView>> {
    policy::may_read_groups(&caller)?;
    Ok(Json(view(&state.db, id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct GroupInput {
    name: String,
}

/// Creates a group (admins).
#[utoipa::path(
    post,
    path = "/groups",
    tag = "groups",
    operation_id = "createGroup",
    request_body = GroupInput,
    responses(
        (status = 201, description = "The group", body = GroupView),
        (status = 400, description = "An invalid name"),
        (status = 409, description = "The name is taken"),
        (status = 415, description = "The body is not `application/json`"),
    ),
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<GroupInput>,
) -> Result<(StatusCode, Json<GroupView>)> {
    policy::may_create_groups(&caller)?;
    check_name(&body.name)?;
    let id = Uuid::now_v7();
    let mut tx = state.db.begin().await?;
    sqlx::query!(
        "insert into groups (id, name) values ($1, $2)",
        id,
        body.name
    )
    .execute(&mut *tx)
    .await
    .map_err(error::unique("groups_name_key", || {
        format!("a group named {:?} already exists", body.name)
    }))?;
    let group = record_and_commit(tx, &caller, "group.create", id, &body.name).await?;
    Ok((StatusCode::CREATED, Json(group)))
}

/// Renames a group (admins).
#[utoipa::path(
    put,
    path = "/groups/{id}",
    tag = "groups",
    operation_id = "renameGroup",
    params(("id" = uuid::Uuid, Path, description = "The group's id")),
    request_body = GroupInput,
    responses(
        (status = 200, description = "The group", body = GroupView),
        (status = 400, description = "An invalid name or id"),
        (status = 404, description = "No such group"),
        (status = 409, description = "The name is taken"),
        (status = 415, description = "The body is not `application/json`"),
    ),
)]
async fn rename(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<GroupInput>,
) -> Result<Json<GroupView>> {
    policy::may_rename_groups(&caller)?;
    check_name(&body.name)?;
    let mut tx = state.db.begin().await?;
    let renamed = sqlx::query!(
        "update groups set name = $2, updated_at = now() where id = $1",
        id,
        body.name
    )
    .execute(&mut *tx)
    .await
    .map_err(error::unique("groups_name_key", || {
        format!("a group named {:?} already exists", body.name)
    }))?;
    if renamed.rows_affected() == 0 {
        return Err(not_found(id));
    }
    let group = record_and_commit(tx, &caller, "group.update", id, &body.name).await?;
    Ok(Json(group))
}

/// The end of a create or rename: the audit row, the group as it now is,
/// and the commit.
async fn record_and_commit(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    caller: &Caller,
    action: &str,
    id: Uuid,
    name: &str,
) -> Result<GroupView> {
    audit::record(
        &mut tx,
        caller,
        action,
        ("group", id.to_string()),
        json!({ "name": name }),
    )
    .await?;
    let group = view(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(group)
}

/// Refused while an access list names the group: dropping it there could
/// make a restricted function or environment public.
/// Deletes a group (admins); refused while an access list names it.
#[utoipa::path(
    delete,
    path = "/groups/{id}",
    tag = "groups",
    operation_id = "deleteGroup",
    params(("id" = uuid::Uuid, Path, description = "The group's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not a UUID"),
        (status = 404, description = "No such group"),
        (status = 409, description = "An access list names the group"),
    ),
)]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    policy::may_delete_groups(&caller)?;
    let mut tx = state.db.begin().await?;
    let named = access::naming(&mut tx, List::Groups, id).await?;
    if !named.is_empty() {
        return Err(Error::Conflict(format!(
            "group {id} is named in the access lists of {}; remove it there first",
            named.join(", ")
        )));
    }
    let deleted = sqlx::query!("delete from groups where id = $1", id)
        .execute(&mut *tx)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(not_found(id));
    }
    auth::changed(&mut tx, auth::Affected::All).await?;
    audit::record(
        &mut tx,
        &caller,
        "group.delete",
        ("group", id.to_string()),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    state.auth.forget(auth::Affected::All);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Members {
    group_id: Uuid,
    members: Vec<Uuid>,
}

#[utoipa::path(
    get,
    path = "/groups/{id}/members",
    tag = "groups",
    operation_id = "listGroupMembers",
    params(("id" = uuid::Uuid, Path, description = "The group's id")),
    responses(
        (status = 200, description = "The members' ids", body = Members),
        (status = 400, description = "The id is not a UUID"),
        (status = 404, description = "No such group"),
    ),
)]
async fn members(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Members>> {
    policy::may_read_group_members(&caller)?;
    let group = view(&state.db, id).await?;
    Ok(Json(Members {
        group_id: id,
        members: group.members,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewMember {
    user_id: Uuid,
}

/// Adds a user (201; 200 if they were already a member).
/// Adds a user to a group (admins).
#[utoipa::path(
    post,
    path = "/groups/{id}/members",
    tag = "groups",
    operation_id = "addGroupMember",
    params(("id" = uuid::Uuid, Path, description = "The group's id")),
    request_body = NewMember,
    responses(
        (status = 201, description = "Added", body = GroupView),
        (status = 200, description = "Already a member", body = GroupView),
        (status = 400, description = "An invalid id, or no such user"),
        (status = 404, description = "No such group"),
        (status = 415, description = "The body is not `application/json`"),
    ),
)]
async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<NewMember>,
) -> Result<(StatusCode, Json<GroupView>)> {
    policy::may_change_group_members(&caller)?;
    let mut tx = state.db.begin().await?;
    let user_exists = sqlx::query_scalar!(
        r#"select exists (select 1 from users where id = $2) as "exists!" from groups where id = $1 for update"#,
        id,
        body.user_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    match user_exists {
        None => return Err(not_found(id)),
        Some(false) => {
            return Err(Error::BadRequest(format!(
                "no user with id {}",
                body.user_id
            )))
        }
        Some(true) => {}
    }
    let added = sqlx::query!(
        "insert into group_members (group_id, user_id) values ($1, $2) on conflict do nothing",
        id,
        body.user_id
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if added {
        auth::changed(&mut tx, auth::Affected::User(body.user_id)).await?;
        audit::record(
            &mut tx,
            &caller,
            "group.member_add",
            ("group", id.to_string()),
            json!({ "userId": body.user_id }),
        )
        .await?;
    }
    let group = view(&mut *tx, id).await?;
    tx.commit().await?;
    state.auth.forget(auth::Affected::User(body.user_id));
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(group)))
}

/// Removes a user from a group (admins).
#[utoipa::path(
    delete,
    path = "/groups/{id}/members/{user_id}",
    tag = "groups",
    operation_id = "removeGroupMember",
    params(
        ("id" = uuid::Uuid, Path, description = "The group's id"),
        ("user_id" = uuid::Uuid, Path, description = "The member's user id"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "An id is not a UUID"),
        (status = 404, description = "No such group, or the user is not a member"),
    ),
)]
async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode> {
    policy::may_change_group_members(&caller)?;
    let mut tx = state.db.begin().await?;
    let removed = sqlx::query!(
        "delete from group_members where group_id = $1 and user_id = $2",
        id,
        user_id
    )
    .execute(&mut *tx)
    .await?;
    if removed.rows_affected() == 0 {
        return Err(Error::NotFound(format!(
            "user {user_id} is not a member of group {id}"
        )));
    }
    auth::changed(&mut tx, auth::Affected::User(user_id)).await?;
    audit::record(
        &mut tx,
        &caller,
        "group.member_remove",
        ("group", id.to_string()),
        json!({ "userId": user_id }),
    )
    .await?;
    tx.commit().await?;
    state.auth.forget(auth::Affected::User(user_id));
    Ok(StatusCode::NO_CONTENT)
}
