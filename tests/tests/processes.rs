//! Real worker processes, really killed: `worker-executor` binaries against
//! the test's database, stopped with SIGKILL mid-run and with SIGTERM.

use std::process::{Child, Command, Stdio};

use plat_tests::{module_cache_dir, workspace_binary, TestApp, Workers, MIGRATOR};
use serde_json::json;
use sqlx::PgPool;

/// Spins for about 20 ms, so kills land while runs are in flight, and logs
/// one line per run: a second line would mean a second run was recorded.
const BUSY_DOUBLER: &str = r#"
pub fn handler(n: u64) -> Result<u64, String> {
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(20) {
        std::hint::black_box(0);
    }
    eprintln!("doubling {n}");
    Ok(n * 2)
}
"#;

/// Sleeps for the input's number of milliseconds.
const SLEEPER: &str = r#"
pub fn handler(ms: u64) -> Result<String, String> {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    Ok(format!("slept {ms} ms"))
}
"#;

fn start_executor(database_url: &str) -> Child {
    start_executor_with(database_url, &[])
}

/// An executor with short leases and polls, and `env` on top.
fn start_executor_with(database_url: &str, env: &[(&str, &str)]) -> Child {
    Command::new(workspace_binary("worker-executor"))
        .env("DATABASE_URL", database_url)
        .env("PLAT_EXECUTE_CONCURRENCY", "2")
        .env("PLAT_EXECUTE_LEASE_SECS", "2")
        .env("PLAT_EXECUTE_POLL_MS", "500")
        .env("RUST_LOG", "warn")
        .env("PLAT_MODULE_CACHE_DIR", module_cache_dir())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start worker-executor")
}

/// Sends SIGTERM, as an orchestrator stopping the process would, and waits
/// for it to exit.
async fn terminate(mut executor: Child) -> std::process::ExitStatus {
    let sent = Command::new("kill")
        .args(["-TERM", &executor.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    tokio::task::spawn_blocking(move || executor.wait())
        .await
        .unwrap()
        .expect("the executor's exit status")
}

/// SIGKILLs the processes and reaps them.
fn kill_all(executors: &mut [Child]) {
    for executor in executors {
        executor.kill().ok();
        executor.wait().ok();
    }
}

/// Waits until at least `count` executions are finished.
async fn wait_for_finished(app: &TestApp, count: i64) {
    app.wait_until(plat_common::notify::EXECUTION_FINISHED, || async {
        (app.count("executions where finished_at is not null").await >= count).then_some(())
    })
    .await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn executors_killed_mid_run_lose_nothing_and_record_each_execution_once(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), Workers::COMPILER_ONLY).await;
    let id = app.ready_function("doubler", BUSY_DOUBLER, json!({})).await;
    let total = 300;
    let mut ids = Vec::new();
    for n in 0..total {
        let queued = app.execute(&id, json!(n), 0).await;
        ids.push((n, queued.body["id"].as_str().unwrap().to_owned()));
    }
    let url = app.database_url();
    let mut executors = [start_executor(&url), start_executor(&url)];

    // Six times: once some progress was made, SIGKILL one executor and start
    // a fresh one in its place.
    for round in 0..6 {
        wait_for_finished(&app, (round + 1) * 30).await;
        let victim = &mut executors[round as usize % 2];
        victim.kill().expect("SIGKILL the executor");
        victim.wait().expect("reap it");
        *victim = start_executor(&url);
    }
    wait_for_finished(&app, total).await;
    kill_all(&mut executors);

    let mut retried = 0;
    for (n, execution_id) in &ids {
        let execution = app.get(&format!("/executions/{execution_id}")).await.body;
        assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
        assert_eq!(execution["output"], json!(n * 2), "{execution}");
        assert_eq!(execution["logs"], format!("doubling {n}\n"), "{execution}");
        if execution["attempts"].as_i64().unwrap() > 1 {
            retried += 1;
        }
    }
    assert!(
        retried > 0,
        "the kills interrupted runs that were then run again"
    );
    let left = app.count("execution_jobs").await;
    assert_eq!(left, 0);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn sigterm_lets_the_running_execution_finish_before_the_executor_exits(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), Workers::COMPILER_ONLY).await;
    let id = app.ready_function("sleeper", SLEEPER, json!({})).await;
    let executor = start_executor(&app.database_url());
    let queued = app.execute(&id, json!(1500), 0).await;
    let execution_id = queued.body["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&execution_id, "RUNNING").await;

    let exit = terminate(executor).await;

    assert!(exit.success(), "a graceful stop exits 0, got {exit}");
    let execution = app.get(&format!("/executions/{execution_id}")).await.body;
    assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
    assert_eq!(execution["output"], "slept 1500 ms");
    assert_eq!(execution["attempts"], 1);
}

/// Drains 200 executions with `processes` executor processes and checks each
/// was run exactly once: one attempt, one log line, the right output.
async fn drain_with_processes(pool: PgPool, processes: usize) {
    let app = TestApp::spawn_with(pool.clone(), Workers::COMPILER_ONLY).await;
    let id = app
        .ready_function("shared-queue", BUSY_DOUBLER, json!({}))
        .await;
    let total = 200;
    let mut ids = Vec::new();
    for n in 0..total {
        let queued = app.execute(&id, json!(n), 0).await;
        ids.push((n, queued.body["id"].as_str().unwrap().to_owned()));
    }

    let url = app.database_url();
    let mut executors: Vec<Child> = (0..processes).map(|_| start_executor(&url)).collect();
    wait_for_finished(&app, total).await;
    kill_all(&mut executors);

    let mut workers = std::collections::HashSet::new();
    for (n, execution_id) in &ids {
        let execution = app.get(&format!("/executions/{execution_id}")).await.body;
        assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
        assert_eq!(execution["attempts"], 1, "{execution}");
        assert_eq!(execution["logs"], format!("doubling {n}\n"), "{execution}");
        assert_eq!(execution["output"], json!(n * 2));
    }
    let rows: Vec<(String,)> = sqlx::query_as("select distinct worker_id from executions")
        .fetch_all(&pool)
        .await
        .unwrap();
    workers.extend(rows.into_iter().map(|(worker,)| worker));
    assert!(workers.len() > 1, "the queue was shared: {workers:?}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn two_executor_processes_on_one_queue_run_each_execution_once(pool: PgPool) {
    drain_with_processes(pool, 2).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn four_executor_processes_on_one_queue_run_each_execution_once(pool: PgPool) {
    drain_with_processes(pool, 4).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn after_the_grace_period_a_stopping_executor_releases_its_run_and_exits(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), Workers::COMPILER_ONLY).await;
    let id = app
        .ready_function("very-sleepy", SLEEPER, json!({ "timeoutMs": 300000 }))
        .await;
    let executor = start_executor_with(
        &app.database_url(),
        &[("PLAT_EXECUTE_SHUTDOWN_GRACE_SECS", "0")],
    );
    // A short run first, so the module is loaded and the long run starts
    // the moment it is claimed (a stop during the load never starts it).
    let warm = app.execute(&id, json!(1), 30).await;
    assert_eq!(warm.body["status"], "SUCCEEDED", "{}", warm.body);
    let queued = app.execute(&id, json!(250_000), 0).await;
    let execution_id = queued.body["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&execution_id, "RUNNING").await;

    // Far below the run's 250 s: only a hang fails this.
    let exit = tokio::time::timeout(std::time::Duration::from_secs(120), terminate(executor))
        .await
        .expect("the executor exited without waiting for the run");

    assert!(exit.success(), "a graceful stop exits 0, got {exit}");
    let execution = app.get(&format!("/executions/{execution_id}")).await.body;
    assert_eq!(
        execution["status"], "QUEUED",
        "released, not lost: {execution}"
    );
    assert_eq!(
        app.count("execution_jobs where state = 'available'").await,
        1
    );
}

/// `PLAT_METRICS_LISTEN` gives a worker process a scrape endpoint of its
/// own (the exporter's listener; the worker has no HTTP server otherwise),
/// with what that process recorded.
#[sqlx::test(migrator = "MIGRATOR")]
async fn an_executor_serves_its_own_metrics_where_it_is_told(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), Workers::COMPILER_ONLY).await;
    let id = app.ready_function("sleeper", SLEEPER, json!({})).await;
    let listen = format!("127.0.0.1:{}", plat_tests::free_port());
    let mut executor =
        start_executor_with(&app.database_url(), &[("PLAT_METRICS_LISTEN", &listen)]);
    let finished = app.execute(&id, json!(1), 30).await;
    assert_eq!(finished.body["status"], "SUCCEEDED", "{}", finished.body);

    let client = reqwest::Client::new();
    let mut metrics = String::new();
    // The run's count is recorded just after its result is written.
    for _ in 0..100 {
        metrics = client
            .get(format!("http://{listen}/metrics"))
            .send()
            .await
            .expect("the executor's metrics endpoint answers")
            .text()
            .await
            .unwrap();
        if metrics.contains(r#"plat_jobs_total{kind="execute",outcome="succeeded"} 1"#) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    kill_all(std::slice::from_mut(&mut executor));

    assert!(
        metrics.contains(r#"plat_jobs_total{kind="execute",outcome="succeeded"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("plat_db_pool_connections"), "{metrics}");
}
