//! `/functions/{function}/schedules`: run a function at the ticks of a cron
//! expression (docs/triggers.md, "Schedules"). Whoever sees the function
//! sees its schedules; whoever may change the function manages them. The
//! runs are queued by `crate::scheduler`, as the schedule's creator.

pub(crate) mod timing;

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use serde_json::value::RawValue;
use sqlx::types::Json as SqlJson;
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use self::timing::{MissedTicks, Timing, NEXT_FIRE_TIMES};
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::executions::{nesting_depth, MAX_INPUT_DEPTH};
use crate::extract::{Json, Path};
use crate::functions::{self, FunctionKey};
use crate::{audit, policy, AppState};

/// Schedules are wakes of every API process's scheduler: more than this per
/// function is a mistake (one schedule takes a cron expression with lists).
const MAX_SCHEDULES_PER_FUNCTION: i64 = 100;
/// Longest cron expression accepted.
const MAX_CRON_CHARS: usize = 200;
/// Longest time zone name accepted (the longest IANA name is 32).
const MAX_TIMEZONE_CHARS: usize = 64;

/// Tells every scheduler that schedules changed, so that it looks again
/// for the next due time (the payload is empty: a hint).
pub(crate) const SCHEDULES_CHANGED: &str = "plat_schedules_changed";

pub fn router() -> crate::openapi::ApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, update, remove))
}

/// A schedule as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct ScheduleView {
    id: Uuid,
    function_id: Uuid,
    /// 5 fields (minute hour day-of-month month day-of-week), or 6 with
    /// seconds first.
    cron: String,
    /// The IANA time zone `cron` is read in.
    timezone: String,
    /// The input of every run: any JSON value.
    #[schema(value_type = serde_json::Value)]
    input: Box<RawValue>,
    /// A paused schedule (false) fires nothing.
    enabled: bool,
    missed_ticks: MissedTicksName,
    /// The next 5 ticks that will fire (none while paused), in UTC.
    next_fire_times: Vec<DateTime<Utc>>,
    /// The latest tick fired, and what it did; null before the first.
    last_fire: Option<FireView>,
    /// The runs are queued as this user.
    created_by: Uuid,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// What a schedule does with ticks that passed while no scheduler ran
/// (when several ticks are due at once): `runLatest` runs the latest of
/// them once, `skip` runs none.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
enum MissedTicksName {
    RunLatest,
    Skip,
}

impl From<MissedTicks> for MissedTicksName {
    fn from(policy: MissedTicks) -> Self {
        match policy {
            MissedTicks::RunLatest => MissedTicksName::RunLatest,
            MissedTicks::Skip => MissedTicksName::Skip,
        }
    }
}

/// One tick fired.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct FireView {
    scheduled_for: DateTime<Utc>,
    /// When the scheduler fired it.
    fired_at: DateTime<Utc>,
    /// `queued`, or why nothing was: `overQuota` (the creator had as many
    /// runs queued or running as allowed), `noReadyVersion`, `creatorDisabled`.
    outcome: String,
    /// The run, when `queued`.
    execution_id: Option<Uuid>,
}

/// A schedule as stored, with its latest fire.
struct Row {
    id: Uuid,
    function_id: Uuid,
    cron: String,
    timezone: String,
    input: SqlJson<Box<RawValue>>,
    enabled: bool,
    missed_ticks: String,
    next_fire_at: Option<DateTime<Utc>>,
    created_by: Uuid,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_scheduled_for: Option<DateTime<Utc>>,
    last_fired_at: Option<DateTime<Utc>>,
    last_outcome: Option<String>,
    last_execution_id: Option<Uuid>,
}

impl Row {
    fn view(self) -> ScheduleView {
        let timing = Timing::parse(&self.cron, &self.timezone).ok();
        // The scheduler's next tick, then the ones after it.
        let next_fire_times = match (self.next_fire_at, timing) {
            (Some(next), Some(timing)) if self.enabled => std::iter::once(next)
                .chain(timing.upcoming(next, NEXT_FIRE_TIMES - 1))
                .collect(),
            _ => Vec::new(),
        };
        let last_fire = match (
            self.last_scheduled_for,
            self.last_fired_at,
            self.last_outcome,
        ) {
            (Some(scheduled_for), Some(fired_at), Some(outcome)) => Some(FireView {
                scheduled_for,
                fired_at,
                outcome,
                execution_id: self.last_execution_id,
            }),
            _ => None,
        };
        ScheduleView {
            id: self.id,
            function_id: self.function_id,
            cron: self.cron,
            timezone: self.timezone,
            input: self.input.0,
            enabled: self.enabled,
            missed_ticks: MissedTicks::parse(&self.missed_ticks)
                .unwrap_or(MissedTicks::RunLatest)
                .into(),
            next_fire_times,
            last_fire,
            created_by: self.created_by,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// `query_as!` of [`Row`]s of function `$1`, then `$tail` (a literal) with
/// its arguments. A macro because a checked statement must be one literal.
macro_rules! select_schedules {
    ($tail:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            Row,
            r#"
            select s.id, s.function_id, s.cron, s.timezone,
                   s.input as "input: SqlJson<Box<RawValue>>", s.enabled, s.missed_ticks,
                   s.next_fire_at, s.created_by, s.created_at, s.updated_at,
                   l.scheduled_for as "last_scheduled_for?", l.created_at as "last_fired_at?",
                   l.outcome as "last_outcome?", l.execution_id as last_execution_id
            from schedules s
            left join lateral (
                select f.scheduled_for, f.created_at, f.outcome, f.execution_id
                from schedule_fires f where f.schedule_id = s.id
                order by f.scheduled_for desc limit 1
            ) l on true
            where s.function_id = $1
            "# + $tail
            $(, $arg)*
        )
    };
}

async fn fetch(db: &mut PgConnection, function_id: Uuid, id: Uuid) -> Result<Option<Row>> {
    Ok(select_schedules!("and s.id = $2", function_id, id)
        .fetch_optional(db)
        .await?)
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("no schedule with id {id} on this function"))
}

/// The schedule `id` of function `function_id`; 404 for anything else.
async fn find(db: &mut PgConnection, function_id: Uuid, id: &str) -> Result<Row> {
    let parsed = Uuid::try_parse(id).map_err(|_| not_found(id))?;
    fetch(db, function_id, parsed)
        .await?
        .ok_or_else(|| not_found(id))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ScheduleList {
    items: Vec<ScheduleView>,
}

/// The function's schedules, oldest first (at most 100 per function).
#[utoipa::path(
    get,
    path = "/functions/{function}/schedules",
    tag = "schedules",
    operation_id = "listSchedules",
    params(("function" = String, Path, description = "The function's id or name")),
    responses(
        (status = 200, description = "The schedules", body = ScheduleList),
        (status = 404, description = "No such function, or not accessible"),
    ),
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(function): Path<String>,
) -> Result<Json<ScheduleList>> {
    let mut conn = state.db.acquire().await?;
    let function =
        functions::find(&mut *conn, &caller, &FunctionKey::parse(function), false).await?;
    let rows = select_schedules!("order by s.created_at, s.id", function.id)
        .fetch_all(&mut *conn)
        .await?;
    Ok(Json(ScheduleList {
        items: rows.into_iter().map(Row::view).collect(),
    }))
}

/// One schedule, with its next 5 fire times.
#[utoipa::path(
    get,
    path = "/functions/{function}/schedules/{schedule}",
    tag = "schedules",
    operation_id = "getSchedule",
    params(
        ("function" = String, Path, description = "The function's id or name"),
        ("schedule" = String, Path, description = "The schedule's id"),
    ),
    responses(
        (status = 200, description = "The schedule", body = ScheduleView),
        (status = 404, description = "No such function or schedule, or not accessible"),
    ),
)]
async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path((function, schedule)): Path<(String, String)>,
) -> Result<Json<ScheduleView>> {
    let mut conn = state.db.acquire().await?;
    let function =
        functions::find(&mut *conn, &caller, &FunctionKey::parse(function), false).await?;
    Ok(Json(find(&mut conn, function.id, &schedule).await?.view()))
}

/// `POST /functions/{function}/schedules`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateSchedule {
    /// 5 fields (minute hour day-of-month month day-of-week), or 6 with
    /// seconds first; names (`MON`, `JAN`), lists, ranges, steps, `L`, `W`,
    /// `#` and `@hourly`-style nicknames are accepted.
    #[schema(example = "*/5 * * * *")]
    cron: String,
    /// An IANA time zone name; default `UTC`.
    #[schema(example = "Europe/Paris")]
    timezone: Option<String>,
    /// The input of every run (any JSON value); default null.
    #[schema(value_type = Option<serde_json::Value>)]
    input: Option<Box<RawValue>>,
    /// Default true.
    enabled: Option<bool>,
    /// Default `runLatest`.
    missed_ticks: Option<MissedTicksName>,
}

/// `PATCH /functions/{function}/schedules/{schedule}`: what is sent changes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateSchedule {
    cron: Option<String>,
    timezone: Option<String>,
    /// The new input (null is a value here: the runs then get null).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<serde_json::Value>)]
    input: Option<Box<RawValue>>,
    /// false pauses, true resumes: ticks while paused are not missed ticks,
    /// they never fire.
    enabled: Option<bool>,
    missed_ticks: Option<MissedTicksName>,
}

/// A field that is present, null included (`Some(null)`), versus absent
/// (`None`, by `#[serde(default)]`).
fn present<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(deserializer).map(Some)
}

fn policy_of(name: Option<MissedTicksName>) -> MissedTicks {
    match name {
        Some(MissedTicksName::Skip) => MissedTicks::Skip,
        Some(MissedTicksName::RunLatest) | None => MissedTicks::RunLatest,
    }
}

/// Checks what a client sent as a cron expression, time zone and input.
fn check(state: &AppState, cron: &str, timezone: &str, input: &RawValue) -> Result<Timing> {
    if cron.chars().count() > MAX_CRON_CHARS {
        return Err(Error::BadRequest(format!(
            "`cron` must be at most {MAX_CRON_CHARS} characters"
        )));
    }
    if timezone.chars().count() > MAX_TIMEZONE_CHARS {
        return Err(Error::BadRequest(format!(
            "`timezone` must be an IANA time zone name of at most {MAX_TIMEZONE_CHARS} characters"
        )));
    }
    if input.get().len() > state.config.max_input_bytes {
        return Err(Error::BadRequest(format!(
            "`input` must be at most {} bytes of JSON",
            state.config.max_input_bytes
        )));
    }
    if nesting_depth(input.get().as_bytes()) > MAX_INPUT_DEPTH {
        return Err(Error::BadRequest(format!(
            "`input` must be nested at most {MAX_INPUT_DEPTH} levels deep"
        )));
    }
    Timing::parse(cron, timezone)
}

/// Wakes every scheduler at this transaction's commit.
async fn changed(tx: &mut PgConnection) -> Result<()> {
    sqlx::query!("select pg_notify($1, '')", SCHEDULES_CHANGED)
        .execute(tx)
        .await?;
    Ok(())
}

/// Adds a schedule to the function (whoever may change the function). Its
/// runs are queued as the caller, under the caller's queue quota.
#[utoipa::path(
    post,
    path = "/functions/{function}/schedules",
    tag = "schedules",
    operation_id = "createSchedule",
    params(("function" = String, Path, description = "The function's id or name")),
    request_body = CreateSchedule,
    responses(
        (status = 201, description = "The schedule", body = ScheduleView),
        (status = 400, description = "An invalid field (`cron`, `timezone`, `input`): the detail names it and says why"),
        (status = 403, description = "The caller may not change this function"),
        (status = 404, description = "No such function, or not accessible"),
        (status = 409, description = "The function has 100 schedules already"),
        (status = 415, description = "The body is not `application/json`"),
    ),
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(function): Path<String>,
    Json(body): Json<CreateSchedule>,
) -> Result<(StatusCode, Json<ScheduleView>)> {
    let mut tx = state.db.begin().await?;
    // Locked, so that two creates cannot both pass the count below.
    let function = functions::find(&mut *tx, &caller, &FunctionKey::parse(function), true).await?;
    policy::may_manage_schedules(&caller)?;
    let timezone = body.timezone.unwrap_or_else(|| "UTC".to_owned());
    let null = RawValue::from_string("null".to_owned()).map_err(anyhow::Error::from)?;
    let input = body.input.unwrap_or(null);
    let timing = check(&state, &body.cron, &timezone, &input)?;
    let enabled = body.enabled.unwrap_or(true);
    let missed_ticks = policy_of(body.missed_ticks);
    let count = sqlx::query_scalar!(
        r#"select count(*) as "n!" from schedules where function_id = $1"#,
        function.id
    )
    .fetch_one(&mut *tx)
    .await?;
    if count >= MAX_SCHEDULES_PER_FUNCTION {
        return Err(Error::Conflict(format!(
            "a function may have at most {MAX_SCHEDULES_PER_FUNCTION} schedules; delete one first"
        )));
    }
    let id = Uuid::now_v7();
    // The first tick is the first after now: a schedule never fires for
    // the past.
    let next_fire_at = enabled.then(|| timing.next_after(Utc::now())).flatten();
    sqlx::query!(
        r#"
        insert into schedules (id, function_id, cron, timezone, input, enabled, missed_ticks,
                               next_fire_at, created_by)
        values ($1, $2, $3, $4, $5::text::jsonb, $6, $7, $8, $9)
        "#,
        id,
        function.id,
        body.cron.trim(),
        timezone,
        input.get(),
        enabled,
        missed_ticks.as_str(),
        next_fire_at,
        caller.user_id,
    )
    .execute(&mut *tx)
    .await
    .map_err(crate::executions::unstorable_input)?;
    audit::record(
        &mut tx,
        &caller,
        "schedule.create",
        ("schedule", id.to_string()),
        json!({ "functionId": function.id, "cron": body.cron.trim(), "timezone": timezone, "enabled": enabled }),
    )
    .await?;
    changed(&mut tx).await?;
    let row = fetch(&mut tx, function.id, id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("schedule {id} vanished"))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(row.view())))
}

/// Changes a schedule: what is sent changes. A new `cron` or `timezone`,
/// or resuming (`enabled: true`), starts from the first tick after now.
#[utoipa::path(
    patch,
    path = "/functions/{function}/schedules/{schedule}",
    tag = "schedules",
    operation_id = "updateSchedule",
    params(
        ("function" = String, Path, description = "The function's id or name"),
        ("schedule" = String, Path, description = "The schedule's id"),
    ),
    request_body = UpdateSchedule,
    responses(
        (status = 200, description = "The schedule", body = ScheduleView),
        (status = 400, description = "An invalid field (`cron`, `timezone`, `input`): the detail names it and says why"),
        (status = 403, description = "The caller may not change this function"),
        (status = 404, description = "No such function or schedule, or not accessible"),
        (status = 415, description = "The body is not `application/json`"),
    ),
)]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path((function, schedule)): Path<(String, String)>,
    Json(body): Json<UpdateSchedule>,
) -> Result<Json<ScheduleView>> {
    let mut tx = state.db.begin().await?;
    let function = functions::find(&mut *tx, &caller, &FunctionKey::parse(function), false).await?;
    policy::may_manage_schedules(&caller)?;
    let current = find(&mut tx, function.id, &schedule).await?;
    let (current_cron, current_timezone) = (current.cron.clone(), current.timezone.clone());
    let cron = body.cron.unwrap_or(current.cron);
    let timezone = body.timezone.unwrap_or(current.timezone);
    let input = body.input.unwrap_or(current.input.0);
    let timing = check(&state, &cron, &timezone, &input)?;
    let enabled = body.enabled.unwrap_or(current.enabled);
    let missed_ticks = match body.missed_ticks {
        Some(name) => policy_of(Some(name)),
        None => MissedTicks::parse(&current.missed_ticks)?,
    };
    // The ticks start again from now when they change, and on resuming:
    // ticks while paused never fire.
    let retime = cron.trim() != current_cron
        || timezone != current_timezone
        || (enabled && !current.enabled);
    let next_fire_at = timing.next_after(Utc::now());
    sqlx::query!(
        r#"
        update schedules
        set cron = $3, timezone = $4, input = $5::text::jsonb, enabled = $6, missed_ticks = $7,
            next_fire_at = case when not $6 then null
                                when $8 or next_fire_at is null then $9
                                else next_fire_at end,
            updated_at = now()
        where id = $1 and function_id = $2
        "#,
        current.id,
        function.id,
        cron.trim(),
        timezone,
        input.get(),
        enabled,
        missed_ticks.as_str(),
        retime,
        next_fire_at,
    )
    .execute(&mut *tx)
    .await
    .map_err(crate::executions::unstorable_input)?;
    audit::record(
        &mut tx,
        &caller,
        "schedule.update",
        ("schedule", current.id.to_string()),
        json!({ "functionId": function.id, "cron": cron.trim(), "timezone": timezone, "enabled": enabled }),
    )
    .await?;
    changed(&mut tx).await?;
    let row = fetch(&mut tx, function.id, current.id)
        .await?
        .ok_or_else(|| not_found(&schedule))?;
    tx.commit().await?;
    Ok(Json(row.view()))
}

/// Deletes a schedule. Runs it already queued are not affected.
#[utoipa::path(
    delete,
    path = "/functions/{function}/schedules/{schedule}",
    tag = "schedules",
    operation_id = "deleteSchedule",
    params(
        ("function" = String, Path, description = "The function's id or name"),
        ("schedule" = String, Path, description = "The schedule's id"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "The caller may not change this function"),
        (status = 404, description = "No such function or schedule, or not accessible"),
    ),
)]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((function, schedule)): Path<(String, String)>,
) -> Result<StatusCode> {
    let mut tx = state.db.begin().await?;
    let function = functions::find(&mut *tx, &caller, &FunctionKey::parse(function), false).await?;
    policy::may_manage_schedules(&caller)?;
    let id = Uuid::try_parse(&schedule).map_err(|_| not_found(&schedule))?;
    let deleted = sqlx::query!(
        "delete from schedules where id = $1 and function_id = $2",
        id,
        function.id
    )
    .execute(&mut *tx)
    .await?;
    if deleted.rows_affected() == 0 {
        return Err(not_found(&schedule));
    }
    audit::record(
        &mut tx,
        &caller,
        "schedule.delete",
        ("schedule", id.to_string()),
        json!({ "functionId": function.id }),
    )
    .await?;
    changed(&mut tx).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
