//! `executionConfig.maxConcurrency`: runs of a function RUNNING at once,
//! across every executor, in-process and as real `worker-executor`
//! processes. Not measured by timing: a trigger installed by the test
//! records, at every claim, how many runs of the function are RUNNING.

use std::process::{Child, Command, Stdio};

use plat_tests::{executor_config, module_cache_dir, workspace_binary, TestApp, Workers, MIGRATOR};
use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;

/// Sleeps for the input's number of milliseconds.
const SLEEPER: &str = r#"
pub fn handler(ms: u64) -> Result<String, String> {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    Ok(format!("slept {ms} ms"))
}
"#;

/// Records, after every statement that updates execution jobs (every claim
/// among them), how many runs of `function` are RUNNING. The statements
/// take turns on an advisory lock held to their commit, so each count
/// sees every earlier claim: the largest recorded is the most that ever ran
/// at once.
async fn record_running(pool: &PgPool, function: &str) {
    for statement in [
        "create table running_seen (running bigint not null)".to_owned(),
        format!(
            r#"
            create function record_running() returns trigger language plpgsql
            -- As the test's owner: the services' own roles (every update
            -- of execution_jobs fires it) have no grant on running_seen.
            security definer set search_path = public as $$
            begin
                perform pg_advisory_xact_lock(2512);
                insert into running_seen
                select count(*) from execution_jobs
                where state = 'running' and function_id = '{function}';
                return null;
            end
            $$
            "#
        ),
        "create trigger record_running after update on execution_jobs
         for each statement execute function record_running()"
            .to_owned(),
    ] {
        sqlx::query(&statement).execute(pool).await.unwrap();
    }
}

/// The most runs of the function seen RUNNING at once, and how many claims
/// (and other updates) were checked.
async fn most_running(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as("select coalesce(max(running), 0), count(*) from running_seen")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn queue(app: &TestApp, function: &str, runs: usize, ms: u64) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..runs {
        let queued = app.execute(function, json!(ms), 0).await;
        ids.push(queued.body["id"].as_str().unwrap().to_owned());
    }
    ids
}

async fn assert_all_succeeded(app: &TestApp, ids: &[String]) {
    for id in ids {
        let execution = app.wait_for_execution(id).await;
        assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn two_executors_never_run_more_than_max_concurrency_at_once(pool: PgPool) {
    let mut app = TestApp::spawn_with(pool.clone(), Workers::COMPILER_ONLY).await;
    let function = app
        .ready_function("capped", SLEEPER, json!({ "maxConcurrency": 2 }))
        .await;
    record_running(&pool, &function).await;
    let ids = queue(&app, &function, 16, 30).await;

    // Four run slots in all, two executors.
    app.start_executor(executor_config()).await;
    app.start_executor(executor_config()).await;

    assert_all_succeeded(&app, &ids).await;
    let (most, checked) = most_running(&pool).await;
    assert!(most <= 2, "{most} runs ran at once, over the limit of 2");
    assert!(checked >= 8, "every claim was checked ({checked})");
    assert_eq!(app.count("function_slots where taken <> 0").await, 0);
}

fn start_executor(database_url: &str) -> Child {
    Command::new(workspace_binary("worker-executor"))
        .env("DATABASE_URL", database_url)
        .env("PLAT_EXECUTE_CONCURRENCY", "2")
        .env("PLAT_EXECUTE_POLL_MS", "200")
        .env("RUST_LOG", "warn")
        .env("PLAT_MODULE_CACHE_DIR", module_cache_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start worker-executor")
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn four_executor_processes_never_run_more_than_max_concurrency_at_once(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), Workers::COMPILER_ONLY).await;
    let function = app
        .ready_function("capped-fleet", SLEEPER, json!({ "maxConcurrency": 3 }))
        .await;
    record_running(&pool, &function).await;
    let ids = queue(&app, &function, 40, 20).await;

    // Eight run slots in all, in four processes.
    let url = app.database_url();
    let mut executors: Vec<Child> = (0..4).map(|_| start_executor(&url)).collect();
    assert_all_succeeded(&app, &ids).await;
    for executor in &mut executors {
        executor.kill().ok();
        executor.wait().ok();
    }

    let (most, checked) = most_running(&pool).await;
    assert!(most <= 3, "{most} runs ran at once, over the limit of 3");
    assert!(checked >= 14, "every claim was checked ({checked})");
    let workers: i64 = sqlx::query_scalar("select count(distinct worker_id) from executions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(workers > 1, "the runs were shared between processes");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn runs_over_the_limit_wait_queued_and_a_version_without_a_limit_frees_them(pool: PgPool) {
    let mut app = TestApp::spawn_with(pool.clone(), Workers::COMPILER_ONLY).await;
    let function = app
        .ready_function("one-at-a-time", SLEEPER, json!({ "maxConcurrency": 1 }))
        .await;
    let shown = app.get(&format!("/functions/{function}")).await;
    assert_eq!(
        shown.body["executionConfig"]["maxConcurrency"], 1,
        "{}",
        shown.body
    );
    let ids = queue(&app, &function, 3, 1).await;
    assert_eq!(app.count("execution_jobs where parked").await, 2);
    let waiting = app.get(&format!("/executions/{}", ids[2])).await;
    assert_eq!(waiting.body["status"], "QUEUED");

    // A new version lifts the limit: runs queued from then on start freely,
    // and the ones waiting for a slot are let go at the next enqueue.
    let lifted = app
        .request(
            Method::PUT,
            &format!("/functions/{function}"),
            Some(json!({ "executionConfig": { "maxConcurrency": null } })),
        )
        .await;
    assert!(lifted.status.is_success(), "{}", lifted.body);
    let version = app.wait_for_build(&function, 2).await;
    assert!(
        version["executionConfig"].get("maxConcurrency").is_none(),
        "{version}"
    );
    let more = queue(&app, &function, 1, 1).await;
    assert_eq!(app.count("execution_jobs where parked").await, 0);

    app.start_executor(executor_config()).await;
    assert_all_succeeded(&app, &ids).await;
    assert_all_succeeded(&app, &more).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn max_concurrency_must_be_a_positive_integer(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;

    let zero = app
        .request(
            Method::POST,
            "/functions",
            Some(json!({
                "name": "zero", "language": "rust", "source": SLEEPER,
                "executionConfig": { "maxConcurrency": 0 },
            })),
        )
        .await;

    let detail = zero.problem(reqwest::StatusCode::BAD_REQUEST);
    assert!(
        detail.contains("executionConfig.maxConcurrency"),
        "{detail}"
    );
}
