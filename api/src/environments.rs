//! `/environments`: named sets of configuration that functions reference;
//! at a run their variables become environment variables (the function's
//! own `environmentVariables` win on a clash). Values are encrypted at rest
//! with `PLAT_SECRETS_KEY` (see `plat_common::secrets`) and shown only to
//! callers who can access the environment; everyone else gets 404. Each
//! read of the values is in the audit log. Secret variables are write-only
//! (see `variables`).

mod variables;

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use plat_common::secrets::SecretsKey;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{PgExecutor, QueryBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use self::variables::{SecretView, VariableInput};
use crate::auth::Caller;
use crate::error::{self, Error, Result};
use crate::extract::{Json, Path};
use crate::policy;
use crate::{access, audit, AppState};

const MAX_NAME_CHARS: usize = 64;
const MAX_DESCRIPTION_CHARS: usize = 2000;

pub fn router() -> crate::openapi::ApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, update, remove))
}

/// An environment as stored, variables still sealed.
#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    name: String,
    description: Option<String>,
    variables: Vec<u8>,
    secret_variables: Vec<String>,
    revision: i64,
    allowed_users: Vec<Uuid>,
    allowed_groups: Vec<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct EnvironmentView {
    id: Uuid,
    name: String,
    description: Option<String>,
    /// The values of the variables that are not secret; only in a single
    /// environment's view (listings show `variableNames`).
    #[serde(skip_serializing_if = "Option::is_none")]
    variables: Option<BTreeMap<String, String>>,
    /// Every variable's name, secrets included.
    variable_names: Vec<String>,
    /// The secret variables (write-only): each name and whether it has a
    /// value. Their values are never returned.
    secrets: Vec<SecretView>,
    revision: i64,
    allowed_users: Vec<Uuid>,
    allowed_groups: Vec<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const SELECT_ENVIRONMENT: &str = r#"
    select e.id, e.name, e.description, e.variables, e.secret_variables, e.revision, e.allowed_users,
           e.allowed_groups, e.created_at, e.updated_at
    from environments e
"#;

fn key(state: &AppState) -> Result<&SecretsKey> {
    state.config.secrets_key.as_ref().ok_or_else(|| {
        Error::NotConfigured(
            "environments are not available: the operator has not set PLAT_SECRETS_KEY".to_owned(),
        )
    })
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("no environment with id {id}"))
}

impl Row {
    /// The stored values, secret or not.
    fn values(&self, key: &SecretsKey) -> Result<plat_common::secrets::Variables> {
        key.open(self.id, &self.variables)
            .map_err(|e| Error::Internal(anyhow::anyhow!("environment {}: {e}", self.id)))
    }

    /// The view; `with_values`: the values of the variables that are not
    /// secret (a secret's value is never shown).
    fn view(self, key: &SecretsKey, with_values: bool) -> Result<EnvironmentView> {
        let shown = variables::show(self.values(key)?, &self.secret_variables, with_values);
        Ok(EnvironmentView {
            id: self.id,
            name: self.name,
            description: self.description,
            variable_names: shown.names,
            secrets: shown.secrets,
            variables: shown.values,
            revision: self.revision,
            allowed_users: self.allowed_users,
            allowed_groups: self.allowed_groups,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// The environment, if the caller can access it (404 otherwise, as if it
/// did not exist). `for_update` locks it until the transaction ends.
async fn find(db: impl PgExecutor<'_>, caller: &Caller, id: &str, for_update: bool) -> Result<Row> {
    let parsed = Uuid::try_parse(id).map_err(|_| not_found(id))?;
    // Two checked statements rather than a spliced `for update`; the macro
    // writes their shared text once.
    macro_rules! select_environment {
        ($lock:literal) => {
            sqlx::query_as!(
                Row,
                r#"
                select id, name, description, variables, secret_variables, revision,
                       allowed_users, allowed_groups, created_at, updated_at
                from environments
                where id = $1
                "#
                    + $lock,
                parsed
            )
            .fetch_optional(db)
            .await?
        };
    }
    let row = if for_update {
        select_environment!("for update")
    } else {
        select_environment!("")
    };
    row.filter(|row| policy::can_see_environment(caller, &row.allowed_users, &row.allowed_groups))
        .ok_or_else(|| not_found(id))
}

#[derive(Serialize, utoipa::ToSchema)]
struct EnvironmentList {
    items: Vec<EnvironmentView>,
}

/// The environments the caller can access, by name, without values.
/// The environments the caller can access, with variable names only.
#[utoipa::path(
    get,
    path = "/environments",
    tag = "environments",
    operation_id = "listEnvironments",
    responses(
        (status = 200, description = "The environments", body = EnvironmentList),
    ),
)]
async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<EnvironmentList>> {
    let key = key(&state)?;
    let mut query = QueryBuilder::new(SELECT_ENVIRONMENT);
    query.push(" where ");
    policy::push_can_see_environment(&mut query, &caller, "e");
    query.push(" order by e.name");
    let rows: Vec<Row> = query.build_query_as().fetch_all(&state.db).await?;
    let items = rows
        .into_iter()
        .map(|row| row.view(key, false))
        .collect::<Result<_>>()?;
    Ok(Json(EnvironmentList { items }))
}

/// One environment, with the values of its variables that are not secret.
/// Each read is recorded in the audit log (`environment.read`), with who.
#[utoipa::path(
    get,
    path = "/environments/{id}",
    tag = "environments",
    operation_id = "getEnvironment",
    params(("id" = String, Path, description = "The environment's id (a UUID; anything else is 404)")),
    responses(
        (status = 200, description = "The environment", body = EnvironmentView),
        (status = 404, description = "No such environment, or not accessible"),
    ),
)]
async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<EnvironmentView>> {
    let key = key(&state)?;
    let mut tx = state.db.begin().await?;
    let row = find(&mut *tx, &caller, &id, false).await?;
    let environment = row.view(key, true)?;
    audit::record(
        &mut tx,
        &caller,
        "environment.read",
        ("environment", environment.id.to_string()),
        json!({ "variableNames": environment.variables.as_ref().map(|v| v.keys().collect::<Vec<_>>()) }),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(environment))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateEnvironment {
    name: String,
    description: Option<String>,
    /// Name → value, or `{"value": "...", "secret": true}` for a write-only
    /// secret (`{"secret": true}` alone declares it unset).
    #[serde(default)]
    variables: BTreeMap<String, VariableInput>,
    #[serde(default)]
    allowed_users: Vec<Uuid>,
    #[serde(default)]
    allowed_groups: Vec<Uuid>,
}

fn check_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "`name` must be 1 to {MAX_NAME_CHARS} characters of letters, digits, `-`, `_` or `.`; got {name:?}"
        )))
    }
}

fn check_description(description: Option<&str>) -> Result<()> {
    match description {
        Some(d) if d.chars().count() > MAX_DESCRIPTION_CHARS || d.contains('\0') => {
            Err(Error::BadRequest(format!(
                "`description` must be at most {MAX_DESCRIPTION_CHARS} characters, without NUL"
            )))
        }
        _ => Ok(()),
    }
}

/// Creates an environment (admins).
#[utoipa::path(
    post,
    path = "/environments",
    tag = "environments",
    operation_id = "createEnvironment",
    request_body = CreateEnvironment,
    responses(
        (status = 201, description = "The environment", body = EnvironmentView),
        (status = 400, description = "An invalid field, an unknown user or group"),
        (status = 409, description = "The name is taken"),
        (status = 415, description = "The body is not `application/json`"),
    ),
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(mut body): Json<CreateEnvironment>,
) -> Result<(StatusCode, Json<EnvironmentView>)> {
    policy::may_create_environments(&caller)?;
    let key = key(&state)?;
    check_name(&body.name)?;
    check_description(body.description.as_deref())?;
    let resolved = variables::resolve(std::mem::take(&mut body.variables), &BTreeMap::new())?;
    let id = Uuid::now_v7();
    let mut tx = state.db.begin().await?;
    access::check(&mut tx, &mut body.allowed_users, &mut body.allowed_groups).await?;
    sqlx::query!(
        r#"
        insert into environments (id, name, description, variables, secret_variables, allowed_users, allowed_groups)
        values ($1, $2, $3, $4, $5, $6, $7)
        "#,
        id,
        body.name,
        body.description,
        key.seal(id, &resolved.values),
        &resolved.secrets,
        &body.allowed_users,
        &body.allowed_groups,
    )
    .execute(&mut *tx)
    .await
    .map_err(error::unique("environments_name_key", || {
        format!("an environment named {:?} already exists", body.name)
    }))?;
    audit::record(
        &mut tx,
        &caller,
        "environment.create",
        ("environment", id.to_string()),
        json!({
            "name": body.name,
            "variableNames": resolved.values.keys().collect::<Vec<_>>(),
            "secretNames": resolved.secrets,
            "allowedUsers": body.allowed_users,
            "allowedGroups": body.allowed_groups,
        }),
    )
    .await?;
    let row = find(&mut *tx, &caller, &id.to_string(), false).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(row.view(key, true)?)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateEnvironment {
    name: Option<String>,
    description: Option<String>,
    /// Replaces all variables; a secret sent as `{"secret": true}` keeps
    /// its current value.
    variables: Option<BTreeMap<String, VariableInput>>,
    allowed_users: Option<Vec<Uuid>>,
    allowed_groups: Option<Vec<Uuid>>,
}

/// `PUT /environments/{id}`, admins only. New `variables` replace the old
/// ones and reach the next run of every function using the environment; a
/// secret sent without a value keeps the value it has.
#[utoipa::path(
    put,
    path = "/environments/{id}",
    tag = "environments",
    operation_id = "updateEnvironment",
    params(("id" = String, Path, description = "The environment's id (a UUID; anything else is 404)")),
    request_body = UpdateEnvironment,
    responses(
        (status = 200, description = "The environment", body = EnvironmentView),
        (status = 400, description = "An invalid field, an unknown user or group"),
        (status = 404, description = "No such environment, or not accessible"),
        (status = 409, description = "The name is taken"),
        (status = 415, description = "The body is not `application/json`"),
    ),
)]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<UpdateEnvironment>,
) -> Result<Json<EnvironmentView>> {
    let key = key(&state)?;
    let mut tx = state.db.begin().await?;
    let row = find(&mut *tx, &caller, &id, true).await?;
    policy::may_change_environments(&caller)?;
    if let Some(name) = &body.name {
        check_name(name)?;
    }
    check_description(body.description.as_deref())?;
    let resolved = match body.variables {
        Some(sent) => Some(variables::resolve(sent, &row.values(key)?)?),
        None => None,
    };
    let permissions_sent = body.allowed_users.is_some() || body.allowed_groups.is_some();
    let mut users = body.allowed_users.unwrap_or(row.allowed_users);
    let mut groups = body.allowed_groups.unwrap_or(row.allowed_groups);
    access::check(&mut tx, &mut users, &mut groups).await?;
    let sealed = resolved.as_ref().map(|v| key.seal(row.id, &v.values));
    sqlx::query!(
        r#"
        update environments
        set name = coalesce($2, name), description = coalesce($3, description),
            variables = coalesce($4, variables),
            secret_variables = coalesce($7, secret_variables),
            revision = revision + case when $4 is null then 0 else 1 end,
            allowed_users = $5, allowed_groups = $6, updated_at = now()
        where id = $1
        "#,
        row.id,
        body.name,
        body.description,
        sealed,
        &users,
        &groups,
        resolved.as_ref().map(|v| v.secrets.as_slice()),
    )
    .execute(&mut *tx)
    .await
    .map_err(error::unique("environments_name_key", || {
        format!(
            "an environment named {:?} already exists",
            body.name.as_deref().unwrap_or_default()
        )
    }))?;
    let target = ("environment", row.id.to_string());
    audit::record(
        &mut tx,
        &caller,
        "environment.update",
        (target.0, target.1.clone()),
        json!({
            "name": body.name,
            "variableNames": resolved.as_ref().map(|v| v.values.keys().collect::<Vec<_>>()),
            "secretNames": resolved.as_ref().map(|v| &v.secrets),
        }),
    )
    .await?;
    if permissions_sent {
        audit::record(
            &mut tx,
            &caller,
            "environment.permissions",
            target,
            json!({ "allowedUsers": users, "allowedGroups": groups }),
        )
        .await?;
    }
    let row = find(&mut *tx, &caller, &id, false).await?;
    tx.commit().await?;
    Ok(Json(row.view(key, true)?))
}

/// Refused while a function references the environment.
/// Deletes an environment (admins); refused while a function uses it.
#[utoipa::path(
    delete,
    path = "/environments/{id}",
    tag = "environments",
    operation_id = "deleteEnvironment",
    params(("id" = String, Path, description = "The environment's id (a UUID; anything else is 404)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such environment, or not accessible"),
        (status = 409, description = "A function uses it"),
    ),
)]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let mut tx = state.db.begin().await?;
    let row = find(&mut *tx, &caller, &id, true).await?;
    policy::may_delete_environments(&caller)?;
    let names = sqlx::query_scalar!(
        "select name from functions where environment_id = $1 order by name limit 10",
        row.id
    )
    .fetch_all(&mut *tx)
    .await?;
    if !names.is_empty() {
        return Err(Error::Conflict(format!(
            "environment {} is used by functions {}; point them elsewhere first",
            row.name,
            names.join(", ")
        )));
    }
    sqlx::query!("delete from environments where id = $1", row.id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        &caller,
        "environment.delete",
        ("environment", row.id.to_string()),
        json!({ "name": row.name }),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
