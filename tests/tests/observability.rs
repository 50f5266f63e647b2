//! What operators and developers see (docs/observability.md): per-function
//! statistics with exact numbers over known executions, `/metrics` in the
//! Prometheus format with counters that move, `/queues` with its workers,
//! the request id from the call to the execution and the worker's JSON logs,
//! and retention deleting exactly what is older than its window.

use std::process::{Command, Stdio};

use chrono::{DateTime, Duration, Utc};
use plat_api::retention::{sweep, Retention, Swept};
use plat_tests::{client_with_key, module_cache_dir, workspace_binary, TestApp, Workers, MIGRATOR};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const ECHO_TS: &str = "export default (input: unknown) => ({ echo: input });\n";

/// One known execution: when it was queued, how it ended, how long it ran.
struct Known {
    created: DateTime<Utc>,
    status: &'static str,
    error_type: Option<&'static str>,
    duration_ms: Option<i32>,
}

/// Writes the executions as QUEUED, then finishes them all in one statement,
/// as an executor's result batch does: started 10 ms after being queued and
/// finished `duration_ms` later (a CANCELLED one never started and ended
/// 40 ms after being queued).
async fn finish_known(pool: &PgPool, function_id: Uuid, known: &[Known]) {
    let ids: Vec<Uuid> = known.iter().map(|_| Uuid::now_v7()).collect();
    for (id, k) in ids.iter().zip(known) {
        sqlx::query(
            "insert into executions (id, function_id, function_version, input, created_at) values ($1, $2, 1, 'null', $3)",
        )
        .bind(id)
        .bind(function_id)
        .bind(k.created)
        .execute(pool)
        .await
        .unwrap();
    }
    let statuses: Vec<&str> = known.iter().map(|k| k.status).collect();
    let errors: Vec<Option<&str>> = known.iter().map(|k| k.error_type).collect();
    let durations: Vec<Option<i32>> = known.iter().map(|k| k.duration_ms).collect();
    sqlx::query(
        r#"
        update executions e
        set status = k.status, error_type = k.error_type,
            error_message = case when k.error_type is null then null else 'known' end,
            duration_ms = k.duration_ms,
            started_at = case when k.duration_ms is null then null else e.created_at + interval '10 ms' end,
            finished_at = case when k.duration_ms is null then e.created_at + interval '40 ms'
                               else e.created_at + interval '10 ms' + make_interval(secs => k.duration_ms / 1000.0) end,
            worker_id = 'execute-known'
        from unnest($1::uuid[], $2::execution_status[], $3::text[], $4::int[]) as k (id, status, error_type, duration_ms)
        where e.id = k.id
        "#,
    )
    .bind(&ids)
    .bind(&statuses)
    .bind(&errors)
    .bind(&durations)
    .execute(pool)
    .await
    .unwrap();
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn stats_over_known_executions_give_the_exact_numbers(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), Workers::NONE).await;
    let function = app
        .create_function_in("typescript", "known", ECHO_TS, json!({}))
        .await;
    let id: Uuid = function.parse().unwrap();
    let ten = at("2026-01-01T10:05:00Z");
    let eleven = at("2026-01-01T11:30:00Z");
    let ok = |created, ms| Known {
        created,
        status: "SUCCEEDED",
        error_type: None,
        duration_ms: Some(ms),
    };
    let mut known: Vec<Known> = [0, 1, 1, 2, 3, 5, 100]
        .into_iter()
        .map(|ms| ok(ten, ms))
        .collect();
    known.push(Known {
        created: ten,
        status: "FAILED",
        error_type: Some("HANDLER_ERROR"),
        duration_ms: Some(4),
    });
    known.push(Known {
        created: ten,
        status: "FAILED",
        error_type: Some("TIMEOUT"),
        duration_ms: Some(1000),
    });
    known.push(Known {
        created: ten,
        status: "CANCELLED",
        error_type: Some("CANCELLED"),
        duration_ms: None,
    });
    known.extend([2, 2, 2].into_iter().map(|ms| ok(eleven, ms)));
    finish_known(&pool, id, &known).await;

    let hourly = app
        .get(&format!("/functions/{function}/stats?from=2026-01-01T10:00:00Z&to=2026-01-01T12:00:00Z&bucket=hour"))
        .await;
    assert_eq!(hourly.status, StatusCode::OK, "{}", hourly.body);
    let stats = &hourly.body;
    assert_eq!(stats["total"], 13);
    assert_eq!(
        stats["byStatus"],
        json!({ "SUCCEEDED": 10, "FAILED": 2, "CANCELLED": 1 })
    );
    assert_eq!(stats["successRate"].as_f64().unwrap(), 10.0 / 13.0);
    assert_eq!(
        stats["errors"],
        json!({ "HANDLER_ERROR": 1, "TIMEOUT": 1, "CANCELLED": 1 })
    );
    // The 12 runs (not the cancelled one): 0 1 1 2 2 2 2 3 4 5 100 1000 ms.
    assert_eq!(stats["durationMs"]["avg"].as_f64().unwrap(), 1122.0 / 12.0);
    assert_eq!(stats["durationMs"]["p50"], 2);
    // 1000 ms is in the bucket [1000, 1200): reported as its largest millisecond.
    assert_eq!(stats["durationMs"]["p95"], 1199);
    assert_eq!(stats["durationMs"]["p99"], 1199);
    assert_eq!(
        stats["queuedMs"]["avg"].as_f64().unwrap(),
        (12.0 * 10.0 + 40.0) / 13.0
    );
    let series = stats["series"].as_array().unwrap();
    assert_eq!(series.len(), 2, "{series:?}");
    assert_eq!(series[0]["start"], "2026-01-01T10:00:00Z");
    assert_eq!(
        (
            series[0]["total"].clone(),
            series[0]["succeeded"].clone(),
            series[0]["failed"].clone(),
            series[0]["cancelled"].clone()
        ),
        (json!(10), json!(7), json!(2), json!(1))
    );
    // 0 1 1 2 3 4 5 100 1000: the 5th of 9.
    assert_eq!(series[0]["durationMs"]["p50"], 3);
    assert_eq!(series[1]["start"], "2026-01-01T11:00:00Z");
    assert_eq!(series[1]["total"], 3);
    assert_eq!(series[1]["durationMs"]["p50"], 2);

    let daily = app
        .get(&format!("/functions/{function}/stats?from=2026-01-01T00:00:00Z&to=2026-01-03T00:00:00Z&bucket=day"))
        .await;
    let days = daily.body["series"].as_array().unwrap();
    assert_eq!(
        days.iter().map(|d| d["total"].clone()).collect::<Vec<_>>(),
        [json!(13), json!(0)]
    );

    let elsewhere = app
        .get(&format!(
            "/functions/{function}/stats?from=2026-02-01T00:00:00Z&to=2026-02-01T01:00:00Z"
        ))
        .await;
    assert_eq!(elsewhere.body["total"], 0);
    assert_eq!(elsewhere.body["successRate"], Value::Null);
    assert_eq!(elsewhere.body["durationMs"]["p50"], Value::Null);

    let backwards = app
        .get(&format!(
            "/functions/{function}/stats?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"
        ))
        .await;
    backwards.problem(StatusCode::BAD_REQUEST);
    let too_many = app
        .get(&format!("/functions/{function}/stats?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z&bucket=hour"))
        .await;
    too_many.problem(StatusCode::BAD_REQUEST);
}

/// The value of the sample `name` with exactly these labels, if present.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

async fn scrape(app: &TestApp) -> prometheus_parse::Scrape {
    let response = app
        .client
        .get(format!("{}/metrics", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text format")
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn metrics_parse_as_prometheus_text_and_move_when_executions_run(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let function = app
        .ready_function_in("typescript", "counted", ECHO_TS, json!({}))
        .await;
    let succeeded = [("kind", "execute"), ("outcome", "succeeded")];
    let execute_route = [
        ("route", "/functions/:function/execute"),
        ("method", "POST"),
        ("status", "200"),
    ];

    let before = scrape(&app).await;
    for n in 0..3 {
        let run = app.execute(&function, json!(n), 30).await;
        assert_eq!(run.body["status"], "SUCCEEDED", "{}", run.body);
    }
    // The executor counts a job after its result is written, so the answer
    // can reach us first: scrape until the third is counted (or give up).
    let mut after = scrape(&app).await;
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while sample(&after, "plat_jobs_total", &succeeded).unwrap_or(0.0)
        - sample(&before, "plat_jobs_total", &succeeded).unwrap_or(0.0)
        < 3.0
        && std::time::Instant::now() < give_up
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        after = scrape(&app).await;
    }

    let moved = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels).unwrap_or(0.0) - sample(&before, name, labels).unwrap_or(0.0)
    };
    assert!(
        moved("plat_jobs_total", &succeeded) >= 3.0,
        "jobs: {:?}",
        sample(&after, "plat_jobs_total", &succeeded)
    );
    assert!(
        moved("plat_http_requests_total", &execute_route) >= 3.0,
        "{:?}",
        after
            .samples
            .iter()
            .filter(|s| s.metric == "plat_http_requests_total")
            .collect::<Vec<_>>()
    );
    assert!(moved("plat_module_cache_total", &[("result", "hit")]) >= 2.0);
    assert!(
        sample(
            &after,
            "plat_compile_duration_seconds_count",
            &[("language", "typescript")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        sample(
            &after,
            "plat_job_duration_seconds_count",
            &[("kind", "execute")]
        )
        .unwrap_or(0.0)
            >= 3.0
    );
    assert_eq!(
        sample(
            &after,
            "plat_queue_jobs",
            &[("queue", "execute"), ("state", "ready")]
        ),
        Some(0.0)
    );
    assert!(sample(
        &after,
        "plat_queue_oldest_ready_seconds",
        &[("queue", "compile")]
    )
    .is_some());
    assert!(sample(
        &after,
        "plat_db_pool_connections",
        &[("component", "api"), ("state", "idle")]
    )
    .is_some());

    let anonymous = app
        .request_with(&reqwest::Client::new(), Method::GET, "/metrics", None)
        .await;
    anonymous.problem(StatusCode::UNAUTHORIZED);
    let dev = app.create_user("dev@example.com", "DEV", None).await;
    let dev = client_with_key(&app.create_key(&dev).await);
    let as_dev = app.request_with(&dev, Method::GET, "/metrics", None).await;
    as_dev.problem(StatusCode::FORBIDDEN);
}

/// The values a label takes across a metric's series.
fn label_values(scrape: &prometheus_parse::Scrape, metric: &str, label: &str) -> Vec<String> {
    let mut values: Vec<String> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter_map(|s| s.labels.get(label).map(str::to_owned))
        .collect();
    values.sort();
    values.dedup();
    values
}

// Anyone can send any token as a method and any path, before authenticating:
// were they labels, each would be a new series kept in memory for good.
#[sqlx::test(migrator = "MIGRATOR")]
async fn invented_methods_and_unknown_paths_add_no_metric_series(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let anonymous = reqwest::Client::new();
    let long_method = format!("X{}", Uuid::new_v4().simple()).repeat(1_000);

    for n in 0..20 {
        let method =
            Method::from_bytes(format!("M{}", Uuid::new_v4().simple()).as_bytes()).unwrap();
        let path = format!("/no-such-route-{}/{n}", Uuid::new_v4());
        let (method_reply, path_reply) = tokio::join!(
            anonymous
                .request(method, format!("{}/functions", app.base_url))
                .send(),
            anonymous.get(format!("{}{path}", app.base_url)).send(),
        );
        assert!(method_reply.unwrap().status().is_client_error());
        assert!(path_reply.unwrap().status().is_client_error());
    }
    let long = anonymous
        .request(
            Method::from_bytes(long_method.as_bytes()).unwrap(),
            format!("{}/healthz", app.base_url),
        )
        .send()
        .await
        .unwrap();
    let scrape = scrape(&app).await;

    assert!(long.status().is_client_error(), "{}", long.status());
    let methods = label_values(&scrape, "plat_http_requests_total", "method");
    let standard = [
        "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "OTHER", "PATCH", "POST", "PUT", "TRACE",
    ];
    assert!(
        methods.iter().all(|m| standard.contains(&m.as_str())),
        "{methods:?}"
    );
    assert!(methods.contains(&"OTHER".to_owned()), "{methods:?}");
    let routes = label_values(&scrape, "plat_http_requests_total", "route");
    assert!(
        routes.iter().all(|r| !r.contains("no-such-route")),
        "{routes:?}"
    );
    assert!(routes.contains(&"unmatched".to_owned()), "{routes:?}");
    let durations = label_values(
        &scrape,
        "plat_http_request_duration_seconds_count",
        "method",
    );
    assert!(
        !durations.is_empty() && durations.iter().all(|m| standard.contains(&m.as_str())),
        "{durations:?}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn queues_show_depths_and_the_workers_with_the_jobs_they_did(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let function = app
        .ready_function_in("typescript", "queued", ECHO_TS, json!({}))
        .await;
    let run = app.execute(&function, json!(1), 30).await;
    assert_eq!(run.body["status"], "SUCCEEDED");

    let overview = app
        .wait_until("plat_never_notified", || async {
            let overview = app.get("/queues").await.body;
            let executor_done = overview["workers"]
                .as_array()?
                .iter()
                .any(|w| w["kind"] == "execute" && w["jobsDone"].as_i64() >= Some(1));
            executor_done.then_some(overview)
        })
        .await;
    let queues = overview["queues"].as_array().unwrap();
    assert_eq!(
        queues.iter().map(|q| q["name"].clone()).collect::<Vec<_>>(),
        [json!("compile"), json!("execute")]
    );
    let execute = &queues[1];
    assert_eq!(execute["ready"], 0);
    assert_eq!(execute["running"], 0);
    assert!(
        execute["doneLastMinute"].as_i64().unwrap() >= 1,
        "{execute}"
    );
    assert_eq!(execute["oldestReadyAgeSecs"], Value::Null);
    let compiler = overview["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["kind"] == "compile")
        .expect("the compiler reported itself");
    assert!(compiler["jobsDone"].as_i64().unwrap() >= 1, "{compiler}");
    assert!(compiler["host"].as_str().is_some_and(|h| !h.is_empty()));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn queues_list_the_newest_failed_builds_and_runs(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let thrower = app
        .ready_function_in(
            "typescript",
            "thrower",
            "export default () => { throw new Error(\"no luck today\"); };\n",
            json!({}),
        )
        .await;
    let run = app.execute(&thrower, json!(1), 30).await;
    let broken = app
        .create_function_in(
            "typescript",
            "broken",
            "export default (input => ;\n",
            json!({}),
        )
        .await;
    let build = app.wait_for_build(&broken, 1).await;
    let succeeded = app
        .ready_function_in("typescript", "fine", ECHO_TS, json!({}))
        .await;
    let fine = app.execute(&succeeded, json!(1), 30).await;

    let failures = app.get("/queues").await.body["recentFailures"].clone();

    assert_eq!(run.body["status"], "FAILED", "{}", run.body);
    assert_eq!(build["status"], "FAILED", "{build}");
    assert_eq!(fine.body["status"], "SUCCEEDED", "{}", fine.body);
    let failures = failures.as_array().unwrap();
    assert_eq!(failures.len(), 2, "{failures:?}");
    // Newest first: the build failed after the run.
    let (compile, execute) = (&failures[0], &failures[1]);
    assert_eq!(compile["queue"], "compile");
    assert_eq!(compile["functionId"], broken.as_str());
    assert_eq!(compile["functionName"], "broken");
    assert_eq!(compile["errorType"], "COMPILE_ERROR");
    assert_eq!(compile["executionId"], Value::Null);
    assert_eq!(execute["queue"], "execute");
    assert_eq!(execute["functionName"], "thrower");
    assert_eq!(execute["executionId"], run.body["id"]);
    assert!(
        execute["message"]
            .as_str()
            .unwrap()
            .contains("no luck today"),
        "{execute}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_request_id_reaches_the_execution_and_the_workers_json_logs(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::COMPILER_ONLY).await;
    let function = app
        .ready_function_in("typescript", "traced", ECHO_TS, json!({}))
        .await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut executor = Command::new(workspace_binary("worker-executor"))
        .env("DATABASE_URL", app.database_url())
        .env("PLAT_MODULE_CACHE_DIR", module_cache_dir())
        .env("PLAT_EXECUTE_POLL_MS", "500")
        .env("RUST_LOG", "plat_worker_executor=debug,warn")
        .env("LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("start worker-executor");

    let response = app
        .client
        .post(format!(
            "{}/functions/{function}/execute?wait=60",
            app.base_url
        ))
        .header("x-request-id", "req-observability-42")
        .json(&json!({ "n": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-observability-42");
    let execution: Value = response.json().await.unwrap();
    // The worker logs the finish after committing it, so the answer can
    // arrive before the line is written: wait for the line, then stop it.
    for _ in 0..300 {
        let written = std::fs::read_to_string(log.path()).unwrap_or_default();
        if written.contains("execution finished") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    executor.kill().ok();
    executor.wait().ok();

    assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
    assert_eq!(execution["requestId"], "req-observability-42");
    assert!(
        execution["workerId"]
            .as_str()
            .unwrap()
            .starts_with("execute-"),
        "{execution}"
    );
    assert!(execution["queuedMs"].as_i64().unwrap() >= 0, "{execution}");
    let read = app
        .get(&format!(
            "/executions/{}",
            execution["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(read.body["requestId"], "req-observability-42");

    let written = std::fs::read_to_string(log.path()).unwrap();
    let lines: Vec<Value> = written
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON line: {line}"))
        })
        .collect();
    let finished = lines
        .iter()
        .find(|line| line["fields"]["message"] == "execution finished")
        .unwrap_or_else(|| panic!("no 'execution finished' line in {written}"));
    assert_eq!(
        finished["span"]["request_id"], "req-observability-42",
        "{finished}"
    );
    assert_eq!(finished["span"]["job_id"], execution["id"], "{finished}");
}

/// A UUIDv7 made at `at`, as the API makes execution ids.
fn id_at(at: DateTime<Utc>) -> Uuid {
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        at.timestamp() as u64,
        at.timestamp_subsec_nanos(),
    ))
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn retention_deletes_exactly_what_is_older_than_its_window(pool: PgPool) {
    let function = Uuid::now_v7();
    let now = Utc::now();
    let at_old_finished = now - Duration::days(31);
    let at_old_unfinished = now - Duration::days(40);
    let at_just_inside = now - Duration::days(29);
    let at_recent = now - Duration::minutes(1);
    let (old_finished, old_unfinished, just_inside, recent) = (
        id_at(at_old_finished),
        id_at(at_old_unfinished),
        id_at(at_just_inside),
        id_at(at_recent),
    );
    for (id, at, finished) in [
        (old_finished, at_old_finished, true),
        (old_unfinished, at_old_unfinished, false),
        (just_inside, at_just_inside, true),
        (recent, at_recent, true),
    ] {
        sqlx::query(
            r#"
            insert into executions (id, function_id, function_version, input, status, created_at, finished_at)
            values ($1, $2, 1, 'null', $3::execution_status, $4, case when $5 then $4 else null end)
            "#,
        )
        .bind(id)
        .bind(function)
        .bind(if finished { "SUCCEEDED" } else { "QUEUED" })
        .bind(at)
        .bind(finished)
        .execute(&pool)
        .await
        .unwrap();
    }
    for days in [401, 399] {
        sqlx::query(
            r#"
            insert into execution_rollups (function_id, hour, status, shard, executions, duration_ms_sum, queued_ms_sum, duration_histogram)
            values ($1, date_trunc('hour', now()) - make_interval(days => $2), 'SUCCEEDED', 0, 1, 1, 1, '{1}')
            "#,
        )
        .bind(function)
        .bind(days)
        .execute(&pool)
        .await
        .unwrap();
    }

    // The default windows: 30 days of executions, 400 of statistics.
    let never_cancelled = CancellationToken::new();
    let sweep_now = || {
        sweep(
            &pool,
            Retention {
                execution_days: 30,
                stats_days: 400,
            },
            now,
            &never_cancelled,
        )
    };
    let swept = sweep_now().await.unwrap();

    assert_eq!(
        swept,
        Swept {
            executions: 1,
            rollups: 1
        }
    );
    let left: Vec<(Uuid,)> = sqlx::query_as("select id from executions order by id")
        .fetch_all(&pool)
        .await
        .unwrap();
    let left: Vec<Uuid> = left.into_iter().map(|(id,)| id).collect();
    let mut expected = vec![old_unfinished, just_inside, recent];
    expected.sort();
    assert_eq!(
        left, expected,
        "only the finished execution older than 30 days is gone"
    );
    let (rollups,): (i64,) = sqlx::query_as("select count(*) from execution_rollups")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rollups, 1);

    let again = sweep_now().await.unwrap();
    assert_eq!(again, Swept::default(), "nothing more to delete");
}
