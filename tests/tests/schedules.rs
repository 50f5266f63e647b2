//! Schedules: their API (validation, access, next fire times), and real API
//! and executor processes firing each tick exactly once, with missed ticks
//! following the schedule's policy after everything was down.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use plat_tests::{
    client_with_key, free_port, module_cache_dir, wait_until_ready, workspace_binary, TestApp,
    Workers, ADMIN_KEY, MIGRATOR,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

const ECHO: &str = r#"
pub fn handler(input: serde_json::Value) -> Result<serde_json::Value, String> {
    Ok(input)
}
"#;

fn times(schedule: &Value) -> Vec<DateTime<Utc>> {
    schedule["nextFireTimes"]
        .as_array()
        .expect("nextFireTimes")
        .iter()
        .map(|t| t.as_str().unwrap().parse().unwrap())
        .collect()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_schedule_is_created_read_listed_paused_resumed_and_deleted(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let function = app.create_function("ticker", ECHO, json!({})).await;
    let path = format!("/functions/{function}/schedules");

    let created = app
        .request(
            Method::POST,
            &path,
            Some(
                json!({ "cron": "0 9 * * MON-FRI", "timezone": "Europe/Paris", "input": {"n": 1} }),
            ),
        )
        .await;

    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let schedule = &created.body;
    assert_eq!(schedule["cron"], "0 9 * * MON-FRI");
    assert_eq!(schedule["timezone"], "Europe/Paris");
    assert_eq!(schedule["input"], json!({"n": 1}));
    assert_eq!(schedule["enabled"], true);
    assert_eq!(schedule["missedTicks"], "runLatest");
    assert_eq!(schedule["lastFire"], Value::Null);
    let next = times(schedule);
    assert_eq!(next.len(), 5);
    assert!(next.windows(2).all(|pair| pair[0] < pair[1]), "{next:?}");
    let paris = next[0].with_timezone(&chrono_tz::Europe::Paris);
    assert_eq!((paris.hour(), paris.minute()), (9, 0), "{next:?}");
    let id = schedule["id"].as_str().unwrap();

    let listed = app.get(&path).await;
    assert_eq!(listed.body["items"][0]["id"], id, "{}", listed.body);
    let by_name = app.get(&format!("/functions/ticker/schedules/{id}")).await;
    assert_eq!(by_name.status, StatusCode::OK, "{}", by_name.body);

    let paused = app
        .request(
            Method::PATCH,
            &format!("{path}/{id}"),
            Some(json!({ "enabled": false })),
        )
        .await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.body);
    assert_eq!(paused.body["nextFireTimes"], json!([]));
    assert_eq!(paused.body["input"], json!({"n": 1}));
    let resumed = app
        .request(
            Method::PATCH,
            &format!("{path}/{id}"),
            Some(json!({ "enabled": true, "cron": "*/10 * * * * *", "missedTicks": "skip", "input": null })),
        )
        .await;
    assert_eq!(resumed.status, StatusCode::OK, "{}", resumed.body);
    assert_eq!(resumed.body["missedTicks"], "skip");
    assert_eq!(resumed.body["input"], Value::Null);
    let every_ten = times(&resumed.body);
    assert!(
        every_ten.iter().all(|t| t.second() % 10 == 0),
        "{every_ten:?}"
    );

    let deleted = app
        .request(Method::DELETE, &format!("{path}/{id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.get(&format!("{path}/{id}"))
        .await
        .problem(StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_bad_cron_or_time_zone_is_refused_naming_the_field(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let function = app.create_function("ticker", ECHO, json!({})).await;
    let path = format!("/functions/{function}/schedules");

    for (body, field) in [
        (json!({ "cron": "61 * * * *" }), "`cron`"),
        (json!({ "cron": "* * *" }), "`cron`"),
        (
            json!({ "cron": "* * * * *", "timezone": "Mars/Olympus" }),
            "`timezone`",
        ),
        (
            json!({ "cron": "* * * * *", "missedTicks": "all" }),
            "missedTicks",
        ),
        (json!({ "cron": "* * * * *", "color": "red" }), "color"),
    ] {
        let reply = app.request(Method::POST, &path, Some(body.clone())).await;
        let detail = reply.problem(StatusCode::BAD_REQUEST);
        assert!(detail.contains(field), "{body}: {detail}");
    }
    assert_eq!(app.count("schedules").await, 0);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn whoever_sees_the_function_sees_its_schedules_and_only_admins_manage_them(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let open = app.create_function("open", ECHO, json!({})).await;
    let dev = app.create_user("dev@example.com", "DEV", None).await;
    let dev_client = client_with_key(&app.create_key(&dev).await);
    let created = app
        .request(
            Method::POST,
            &format!("/functions/{open}/schedules"),
            Some(json!({ "cron": "@hourly" })),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap();
    let as_dev = |method: Method, path: String, body: Option<Value>| {
        let mut request = dev_client.request(method, format!("{}{path}", app.base_url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move { plat_tests::read(request.send().await.unwrap()).await }
    };

    let listed = as_dev(Method::GET, format!("/functions/{open}/schedules"), None).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert_eq!(listed.body["items"][0]["id"], id);
    as_dev(
        Method::POST,
        format!("/functions/{open}/schedules"),
        Some(json!({ "cron": "* * * * *" })),
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    as_dev(
        Method::DELETE,
        format!("/functions/{open}/schedules/{id}"),
        None,
    )
    .await
    .problem(StatusCode::FORBIDDEN);

    // A function only the admin may see: its schedules do not exist for the DEV.
    let admin = app.get("/me").await.body["id"].clone();
    let closed_reply = app
        .request(
            Method::POST,
            "/functions",
            Some(json!({ "name": "closed", "language": "rust", "source": ECHO, "allowedUsers": [admin] })),
        )
        .await;
    assert_eq!(
        closed_reply.status,
        StatusCode::ACCEPTED,
        "{}",
        closed_reply.body
    );
    let closed = closed_reply.body["id"].as_str().unwrap();
    as_dev(Method::GET, format!("/functions/{closed}/schedules"), None)
        .await
        .problem(StatusCode::NOT_FOUND);
}

// Real processes.

fn start_api(database_url: &str, port: u16) -> Child {
    Command::new(workspace_binary("api"))
        .env("DATABASE_URL", database_url)
        .env("PLAT_LISTEN", format!("127.0.0.1:{port}"))
        .env("PLAT_BOOTSTRAP_ADMIN_KEY", ADMIN_KEY)
        .env("PLAT_SECRETS_KEY", plat_tests::SECRETS_KEY)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the api binary")
}

fn start_executor(database_url: &str) -> Child {
    Command::new(workspace_binary("worker-executor"))
        .env("DATABASE_URL", database_url)
        .env("PLAT_EXECUTE_CONCURRENCY", "2")
        .env("RUST_LOG", "warn")
        .env("PLAT_MODULE_CACHE_DIR", module_cache_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start worker-executor")
}

/// Child processes, SIGKILLed if the test ends (or fails) before
/// [`stop_everything`] stopped them.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// Two API processes and two executors; returns them and the APIs' URLs.
async fn start_everything(database_url: &str) -> (Children, Vec<String>) {
    let ports = [free_port(), free_port()];
    let mut children = Children(
        ports
            .iter()
            .map(|port| start_api(database_url, *port))
            .collect(),
    );
    children.0.push(start_executor(database_url));
    children.0.push(start_executor(database_url));
    let urls: Vec<String> = ports
        .iter()
        .map(|port| format!("http://127.0.0.1:{port}"))
        .collect();
    for url in &urls {
        wait_until_ready(url).await;
    }
    (children, urls)
}

/// SIGTERMs every process and waits for each to exit.
async fn stop_everything(mut children: Children) {
    let children = std::mem::take(&mut children.0);
    for child in &children {
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
    }
    for mut child in children {
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .ok();
    }
}

async fn post_schedule(url: &str, function: &str, body: Value) -> Uuid {
    let reply = client_with_key(ADMIN_KEY)
        .post(format!("{url}/functions/{function}/schedules"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let reply = plat_tests::read(reply).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().parse().unwrap()
}

/// The `scheduledFor` of every execution of the schedule, in order, with
/// repeats (a tick run twice would show twice).
async fn scheduled_runs(pool: &PgPool, schedule: Uuid) -> Vec<DateTime<Utc>> {
    sqlx::query_scalar(
        "select (trigger ->> 'scheduledFor')::timestamptz from executions
         where trigger ->> 'type' = 'schedule' and (trigger ->> 'scheduleId')::uuid = $1
         order by 1",
    )
    .bind(schedule)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn db_now(pool: &PgPool) -> DateTime<Utc> {
    sqlx::query_scalar("select now()")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Polls `check` every 200 ms until it holds; panics after `patience`.
async fn poll_until<F, Fut>(what: &str, patience: Duration, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + patience;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn assert_every_second(runs: &[DateTime<Utc>]) {
    for pair in runs.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            chrono::TimeDelta::seconds(1),
            "a gap or a duplicate between {} and {}",
            pair[0],
            pair[1]
        );
    }
}

/// A cron expression whose only ticks (this year) are `first` and `second`,
/// in the same minute, in UTC.
fn two_ticks(first: DateTime<Utc>, second: DateTime<Utc>) -> String {
    use chrono::Datelike;
    format!(
        "{},{} {} {} {} {} *",
        first.second(),
        second.second(),
        first.minute(),
        first.hour(),
        first.day(),
        first.month()
    )
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn two_api_processes_fire_each_tick_once_and_missed_ticks_follow_the_policy(pool: PgPool) {
    // Arrange: a READY function; then only the processes below schedule.
    let app = TestApp::spawn_with(
        pool.clone(),
        Workers {
            compilers: 1,
            executors: 0,
        },
    )
    .await;
    let function = app.ready_function("ticker", ECHO, json!({})).await;
    app.stop_api();
    let database_url = app.database_url();
    let (children, urls) = start_everything(&database_url).await;

    // Act 1: a schedule every second, for 30 s.
    let every_second = post_schedule(
        &urls[0],
        &function,
        json!({ "cron": "* * * * * *", "input": "tick" }),
    )
    .await;
    poll_until("30 ticks fired", Duration::from_secs(120), || async {
        scheduled_runs(&pool, every_second).await.len() >= 30
    })
    .await;

    // Two schedules whose two ticks fall while everything is down.
    let mut first = db_now(&pool).await + chrono::TimeDelta::seconds(6);
    if first.second() > 50 {
        first += chrono::TimeDelta::seconds(i64::from(62 - first.second()));
    }
    let first = first.with_nanosecond(0).unwrap();
    let second = first + chrono::TimeDelta::seconds(2);
    let cron = two_ticks(first, second);
    let run_latest = post_schedule(
        &urls[1],
        &function,
        json!({ "cron": cron, "missedTicks": "runLatest" }),
    )
    .await;
    let skip = post_schedule(
        &urls[1],
        &function,
        json!({ "cron": cron, "missedTicks": "skip" }),
    )
    .await;

    // Act 2: stop everything for 10 s, then start again.
    stop_everything(children).await;
    let last_before = *scheduled_runs(&pool, every_second).await.last().unwrap();
    assert!(
        db_now(&pool).await < first,
        "the processes took too long to stop: the ticks at {first} were not missed"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    poll_until("both ticks passed", Duration::from_secs(30), || async {
        db_now(&pool).await > second + chrono::TimeDelta::seconds(1)
    })
    .await;
    let restarted_at = db_now(&pool).await;
    assert!(restarted_at > second);
    let (children, urls) = start_everything(&database_url).await;
    poll_until("the recovery fired", Duration::from_secs(60), || async {
        let skip_moved_on: bool = sqlx::query_scalar(
            "select next_fire_at is null or next_fire_at > now() from schedules where id = $1",
        )
        .bind(skip)
        .fetch_one(&pool)
        .await
        .unwrap();
        let ticked_again = scheduled_runs(&pool, every_second)
            .await
            .last()
            .is_some_and(|last| *last > restarted_at + chrono::TimeDelta::seconds(2));
        skip_moved_on && ticked_again && !scheduled_runs(&pool, run_latest).await.is_empty()
    })
    .await;
    let paused = client_with_key(ADMIN_KEY)
        .patch(format!(
            "{}/functions/{function}/schedules/{every_second}",
            urls[0]
        ))
        .json(&json!({ "enabled": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(paused.status(), StatusCode::OK);

    // Assert: every tick ran once, before and after the outage.
    let runs = scheduled_runs(&pool, every_second).await;
    let (before, after): (Vec<_>, Vec<_>) = runs.iter().partition(|t| **t <= last_before);
    assert!(before.len() >= 30, "{before:?}");
    assert_every_second(&before);
    assert_every_second(&after);
    // The outage's ticks: at most one of them ran (runLatest), never a burst.
    let during = after.iter().filter(|t| **t <= restarted_at).count();
    assert!(during <= 1, "{after:?}");
    let fires: i64 = sqlx::query_scalar(
        "select count(*) from schedule_fires where schedule_id = $1 and outcome = 'queued'",
    )
    .bind(every_second)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(fires, runs.len() as i64);
    // Two missed ticks: runLatest ran the latest once; skip ran none.
    assert_eq!(scheduled_runs(&pool, run_latest).await, vec![second]);
    assert_eq!(
        scheduled_runs(&pool, skip).await,
        Vec::<DateTime<Utc>>::new()
    );
    // And every run queued is run by the executors.
    poll_until(
        "every scheduled run finished",
        Duration::from_secs(120),
        || async { app.count("executions where finished_at is null").await == 0 },
    )
    .await;
    assert_eq!(
        app.count("executions where status <> 'SUCCEEDED'").await,
        0,
        "every scheduled run succeeds"
    );
    stop_everything(children).await;
}

/// Runs the `plat` binary against `api_url` as the admin; answers its exit
/// code and stdout, panicking with stderr when it failed.
async fn plat(api_url: &str, args: &[&str]) -> String {
    let config = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(workspace_binary("plat"))
        .args(args)
        .env_remove("RUST_LOG")
        .env("PLAT_API_URL", api_url)
        .env("PLAT_API_KEY", ADMIN_KEY)
        .env("PLAT_CONFIG_DIR", config.path())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("plat ran");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "plat {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn plat_schedule_adds_lists_pauses_resumes_and_removes(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    app.create_function("ticker", ECHO, json!({})).await;
    let url = app.base_url.as_str();

    let added: Value = serde_json::from_str(
        &plat(
            url,
            &[
                "schedule",
                "add",
                "ticker",
                "*/15 * * * *",
                "--timezone",
                "Asia/Tokyo",
                "--input",
                "{\"a\":1}",
                "-o",
                "json",
            ],
        )
        .await,
    )
    .unwrap();
    let id = added["id"].as_str().unwrap().to_owned();
    assert_eq!(added["timezone"], "Asia/Tokyo");
    assert_eq!(added["input"], json!({"a": 1}));

    let listed = plat(url, &["schedule", "ls", "ticker"]).await;
    assert!(
        listed.contains(&id) && listed.contains("*/15 * * * *"),
        "{listed}"
    );
    let paused: Value =
        serde_json::from_str(&plat(url, &["schedule", "pause", "ticker", &id, "-o", "json"]).await)
            .unwrap();
    assert_eq!(paused["enabled"], false);
    let resumed = plat(url, &["schedule", "resume", "ticker", &id]).await;
    assert!(resumed.contains("next:"), "{resumed}");
    plat(url, &["schedule", "rm", "ticker", &id]).await;
    assert_eq!(app.count("schedules").await, 0);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_tick_refused_by_the_creators_quota_is_recorded_not_lost(pool: PgPool) {
    // Arrange: a creator who made the schedule as an admin and is now a DEV
    // with a quota of one run in flight; no executor, so runs stay queued.
    let config = plat_api::ApiConfig {
        max_queued_per_user: 1,
        ..plat_tests::api_config()
    };
    let app = TestApp::spawn_configured(
        pool,
        Workers {
            compilers: 1,
            executors: 0,
        },
        config,
    )
    .await;
    let function = app.ready_function("ticker", ECHO, json!({})).await;
    let creator = app.create_user("ops@example.com", "ADMIN", None).await;
    let creator_client = client_with_key(&app.create_key(&creator).await);
    let created = creator_client
        .post(format!("{}/functions/{function}/schedules", app.base_url))
        .json(&json!({ "cron": "* * * * * *" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let demoted = app
        .request(
            Method::PUT,
            &format!("/users/{creator}"),
            Some(json!({ "role": "DEV" })),
        )
        .await;
    assert_eq!(demoted.status, StatusCode::OK, "{}", demoted.body);

    // Act: ticks fire until one is refused.
    poll_until("a tick over the quota", Duration::from_secs(60), || async {
        app.count("schedule_fires where outcome = 'overQuota'")
            .await
            > 0
    })
    .await;

    // Assert: the refused tick is on record and shown; the creator's runs
    // never exceed the quota.
    let refused: (Option<Uuid>,) = sqlx::query_as(
        "select execution_id from schedule_fires where outcome = 'overQuota' limit 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(refused.0, None);
    let queued = app
        .count(&format!(
            "executions where created_by = '{creator}' and finished_at is null"
        ))
        .await;
    assert!(queued <= 1, "{queued} runs in flight over a quota of 1");
    let listed = app.get(&format!("/functions/{function}/schedules")).await;
    poll_until("lastFire shows a fire", Duration::from_secs(10), || async {
        let listed = app.get(&format!("/functions/{function}/schedules")).await;
        !listed.body["items"][0]["lastFire"]["outcome"].is_null()
    })
    .await;
    assert_eq!(listed.status, StatusCode::OK);
}
