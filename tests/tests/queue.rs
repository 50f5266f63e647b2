//! Queue guarantees with real workers: concurrent claimers never share a job,
//! and a job whose worker died is run again, once.

use std::collections::HashSet;
use std::time::Duration;

use plat_common::queue::execute::{self, Finished, NewExecution};
use plat_common::{notify, ErrorKind};
use plat_tests::{executor_config, TestApp, Workers, HELLO, MIGRATOR};
use serde_json::json;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use uuid::Uuid;

#[sqlx::test(migrator = "MIGRATOR")]
async fn concurrent_claimers_never_claim_the_same_job(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), Workers::COMPILER_ONLY).await;
    let id = app.ready_function("claimed", HELLO, json!({})).await;
    for i in 0..200 {
        app.execute(&id, json!({ "i": i }), 0).await;
    }

    // Four claimers race in batches of 7 until the queue is empty.
    let claimers = (0..4).map(|n| {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let jobs =
                    execute::claim(&pool, &format!("claimer-{n}"), Duration::from_secs(60), 7)
                        .await
                        .unwrap();
                if jobs.is_empty() {
                    return mine;
                }
                mine.extend(jobs.into_iter().map(|job| job.id));
            }
        })
    });
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }

    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 200, "every job claimed");
    assert_eq!(unique.len(), 200, "no job claimed twice");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn two_executors_on_one_queue_run_each_execution_exactly_once(pool: PgPool) {
    let app = TestApp::spawn_with(
        pool,
        Workers {
            compilers: 1,
            executors: 2,
        },
    )
    .await;
    let id = app.ready_function("shared", HELLO, json!({})).await;

    let mut ids = Vec::new();
    for i in 0..40 {
        let queued = app
            .execute(&id, json!({ "name": format!("n{i}") }), 0)
            .await;
        ids.push((i, queued.body["id"].as_str().unwrap().to_owned()));
    }

    for (i, execution_id) in &ids {
        let execution = app.wait_for_execution(execution_id).await;
        assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
        assert_eq!(execution["attempts"], 1, "{execution}");
        assert_eq!(execution["output"]["greeting"], format!("Hello, n{i}!"));
        // The log line appears once: the handler ran once for this execution.
        assert_eq!(execution["logs"], format!("greeting \"n{i}\"\n"));
    }
    let left = app.count("execution_jobs").await;
    assert_eq!(left, 0, "finished jobs leave the hot queue");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_job_whose_worker_died_is_run_again_and_the_dead_worker_cannot_overwrite_it(
    pool: PgPool,
) {
    let mut app = TestApp::spawn_with(pool.clone(), Workers::COMPILER_ONLY).await;
    let id = app.ready_function("orphan", HELLO, json!({})).await;
    let queued = app.execute(&id, json!({ "name": "Lost" }), 0).await;
    let execution_id = queued.body["id"].as_str().unwrap().to_owned();

    // A worker claims the job and dies: its lease runs out with no heartbeat.
    let claimed = execute::claim(&pool, "doomed-worker", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let zombie = claimed.into_iter().next().unwrap();
    let running = app.get(&format!("/executions/{execution_id}")).await;
    assert_eq!(running.body["status"], "RUNNING");
    sqlx::query("update execution_jobs set lease_expires_at = now() - interval '1 second'")
        .execute(&pool)
        .await
        .unwrap();

    // A live executor's rescuer returns the job to the queue and runs it.
    app.start_executor(executor_config()).await;
    let finished = app.wait_for_execution(&execution_id).await;

    assert_eq!(finished["status"], "SUCCEEDED");
    assert_eq!(finished["attempts"], 2);
    assert_eq!(finished["output"]["greeting"], "Hello, Lost!");

    // The dead worker wakes up late: its write is refused, the record stands.
    let late = Finished::succeeded("\"zombie\"", 1);
    assert!(!execute::complete(&pool, &zombie, &late).await.unwrap());
    let after = app.get(&format!("/executions/{execution_id}")).await;
    assert_eq!(after.body["output"]["greeting"], "Hello, Lost!");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_claimed_execution_reads_and_lists_as_running_and_keeps_its_start_when_finished(
    pool: PgPool,
) {
    let app = TestApp::spawn_with(pool.clone(), Workers::COMPILER_ONLY).await;
    let id = app.ready_function("listed", HELLO, json!({})).await;
    let first = app.execute(&id, json!({ "name": "First" }), 0).await;
    let first = first.body["id"].as_str().unwrap().to_owned();
    // Claimed alone: the second is queued after it.
    let claimed = execute::claim(&pool, "lister", Duration::from_secs(60), 1)
        .await
        .unwrap();
    let second = app.execute(&id, json!({ "name": "Second" }), 0).await;
    let second = second.body["id"].as_str().unwrap().to_owned();
    let listed = |status: &'static str| {
        let app = &app;
        let id = &id;
        async move {
            let page = app
                .get(&format!("/functions/{id}/executions?status={status}"))
                .await;
            page.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };

    let running = app.get(&format!("/executions/{first}")).await;
    assert_eq!(running.body["status"], "RUNNING", "{}", running.body);
    assert_eq!(running.body["attempts"], 1);
    let started_at = running.body["startedAt"].as_str().unwrap().to_owned();
    assert_eq!(listed("RUNNING").await, vec![first.clone()]);
    assert_eq!(listed("QUEUED").await, vec![second.clone()]);
    assert!(listed("SUCCEEDED").await.is_empty());

    let job = claimed.into_iter().next().unwrap();
    let done = Finished::succeeded("{\"ok\":true}", 1);
    assert!(execute::complete(&pool, &job, &done).await.unwrap());

    let finished = app.get(&format!("/executions/{first}")).await;
    assert_eq!(finished.body["status"], "SUCCEEDED", "{}", finished.body);
    assert_eq!(finished.body["attempts"], 1);
    assert_eq!(finished.body["startedAt"], started_at.as_str());
    assert_eq!(listed("SUCCEEDED").await, [first]);
    assert!(listed("RUNNING").await.is_empty());
    assert_eq!(listed("QUEUED").await, [second]);
    let (worker,): (Option<String>,) =
        sqlx::query_as("select worker_id from executions where status = 'SUCCEEDED'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(worker.as_deref(), Some("lister"));
}

/// A claim's commit skips the WAL flush (`execute::claim` says why), and
/// only its own: a connection that claimed must still commit results
/// durably afterwards, or finished executions could be lost in a crash.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_claim_commits_without_waiting_for_the_flush_and_only_the_claim_does(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), Workers::COMPILER_ONLY).await;
    let id = app.ready_function("relaxed", HELLO, json!({})).await;
    app.execute(&id, json!({ "name": "Relaxed" }), 0).await;
    let mut conn = pool.acquire().await.unwrap();
    // Durable for this session whatever the server's default (the test
    // suite's own clusters run with synchronous_commit off).
    sqlx::query("set synchronous_commit = on")
        .execute(&mut *conn)
        .await
        .unwrap();

    let mut claim = sqlx::Connection::begin(&mut *conn).await.unwrap();
    let jobs = execute::claim(&mut *claim, "relaxed", Duration::from_secs(60), 1)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        setting(&mut claim).await.unwrap(),
        "off",
        "during the claim's transaction"
    );
    claim.commit().await.unwrap();

    assert_eq!(
        setting(&mut conn).await.unwrap(),
        "on",
        "after it, on the same connection"
    );
    let done = Finished::succeeded("{}", 1);
    assert!(execute::complete(&mut *conn, &jobs[0], &done)
        .await
        .unwrap());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_enqueue_wakes_the_executors_in_its_own_statement_only_when_asked(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), Workers::COMPILER_ONLY).await;
    let id = app.ready_function("woken", HELLO, json!({})).await;
    let mut listener = PgListener::connect_with(&pool).await.unwrap();
    listener.listen(notify::EXECUTION_JOBS).await.unwrap();
    let function_id: Uuid = id.parse().unwrap();
    let enqueue = |wake_executors| {
        let pool = pool.clone();
        async move {
            let new = NewExecution {
                id: Uuid::now_v7(),
                function_id,
                version: 1,
                input_json: "{}",
                idempotency_key: None,
                created_by: None,
                request_id: None,
                wake_executors,
                max_in_flight: None,
                trigger: &plat_common::Trigger::Api,
                webhook_urls: None,
            };
            execute::enqueue(&mut pool.acquire().await.unwrap(), new).await
        }
    };

    enqueue(false).await.unwrap();
    // Notifications arrive in commit order: if the enqueue had sent one,
    // it would come before this marker.
    sqlx::query("select pg_notify($1, 'marker')")
        .bind(notify::EXECUTION_JOBS)
        .execute(&pool)
        .await
        .unwrap();
    let first = listener.recv().await.unwrap();
    enqueue(true).await.unwrap();
    // Patience, not a speed check: without the wake-up it would wait forever.
    let second = tokio::time::timeout(Duration::from_secs(60), listener.recv())
        .await
        .expect("the enqueue sent no notification")
        .unwrap();

    assert_eq!(first.payload(), "marker", "no wake-up without asking");
    assert_eq!(second.payload(), "", "the enqueue's own wake-up");
}

/// The heartbeat and the rescuer never wait for a job another transaction
/// holds (the result writer deleting a batch locks its rows in its own
/// order; waiting for them deadlocked once in plat-bench and cost a batch
/// of results). What they skip, they handle in a later round.
#[sqlx::test(migrator = "MIGRATOR")]
async fn heartbeats_and_rescues_skip_jobs_another_transaction_holds(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), Workers::COMPILER_ONLY).await;
    let id = app.ready_function("held", HELLO, json!({})).await;
    for i in 0..4 {
        app.execute(&id, json!({ "name": i.to_string() }), 0).await;
    }
    let jobs = execute::claim(&pool, "holder", Duration::from_secs(60), 4)
        .await
        .unwrap();
    let [beating, held, expired_held, expired] = &jobs[..] else {
        panic!("claimed {} jobs, queued 4", jobs.len());
    };
    sqlx::query("update execution_jobs set lease_expires_at = now() - interval '1 second' where id = any($1)")
        .bind([expired_held.id, expired.id])
        .execute(&pool)
        .await
        .unwrap();
    // Another session is in the middle of finishing two of them.
    let mut writer = pool.begin().await.unwrap();
    sqlx::query("select 1 from execution_jobs where id = any($1) for update")
        .bind([held.id, expired_held.id])
        .execute(&mut *writer)
        .await
        .unwrap();
    // Without skipping, each call below would wait for `writer` forever.
    let patience = Duration::from_secs(60);

    let tokens = [beating.lease_token, held.lease_token];
    let cancelled = tokio::time::timeout(
        patience,
        execute::heartbeat(&pool, &tokens, Duration::from_secs(600)),
    )
    .await
    .expect("the heartbeat waited for a held job")
    .unwrap();
    assert!(cancelled.is_empty());
    let rescued = tokio::time::timeout(patience, execute::rescue_expired(&pool))
        .await
        .expect("the rescuer waited for a held job")
        .unwrap();
    assert_eq!(rescued, 1, "only the expired job nobody holds");

    writer.rollback().await.unwrap();
    let extended = |job: Uuid| {
        sqlx::query_scalar::<_, bool>(
            "select lease_expires_at > now() + interval '300 seconds' from execution_jobs where id = $1",
        )
        .bind(job)
        .fetch_one(&pool)
    };
    assert!(extended(beating.id).await.unwrap());
    assert!(!extended(held.id).await.unwrap(), "skipped this round");
    let state = |job: Uuid| {
        sqlx::query_scalar::<_, String>("select state::text from execution_jobs where id = $1")
            .bind(job)
            .fetch_one(&pool)
    };
    assert_eq!(state(expired.id).await.unwrap(), "available");
    assert_eq!(
        state(expired_held.id).await.unwrap(),
        "running",
        "left for the next round"
    );
    assert_eq!(
        execute::rescue_expired(&pool).await.unwrap(),
        1,
        "the next round"
    );
}

async fn setting(conn: &mut sqlx::PgConnection) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("show synchronous_commit")
        .fetch_one(conn)
        .await
}

/// Writing results updates the history rows in place (HOT: no new index
/// entries, migration 20261128000001), successes and failures alike, and
/// the failures stay listable by status, newest first, page by page.
#[sqlx::test(migrator = "MIGRATOR")]
async fn results_update_history_rows_in_place_and_stay_listable_by_status(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), Workers::COMPILER_ONLY).await;
    let function = app.ready_function("in-place", HELLO, json!({})).await;
    let function_id = Uuid::parse_str(&function).unwrap();
    let ids: Vec<Uuid> = (0..60).map(|_| Uuid::new_v4()).collect();
    let inputs: Vec<String> = (0..60).map(|i| json!({ "name": i }).to_string()).collect();
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    execute::enqueue_batch(
        &pool,
        execute::NewBatch {
            function_id,
            version: 1,
            ids: &ids,
            inputs: &inputs,
            created_by: None,
            request_id: None,
            max_in_flight: None,
            webhook_urls: None,
        },
    )
    .await
    .unwrap();
    let jobs = execute::claim(&pool, "in-place", Duration::from_secs(60), 60)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 60);
    // By queue order: 40 succeed (echoing their input), then 15 fail, then 5
    // are cancelled.
    let finished: Vec<Finished> = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| match i {
            0..40 => Finished::succeeded(job.input.clone(), 1),
            40..55 => Finished::failed(ErrorKind::HandlerError, "no luck".to_owned()),
            _ => Finished::failed(ErrorKind::Cancelled, "stopped".to_owned()),
        })
        .collect();
    let results: Vec<_> = jobs.iter().zip(&finished).collect();

    let mut tx = pool.begin().await.unwrap();
    let written = execute::complete_batch(&mut *tx, &results).await.unwrap();
    let (updated, hot): (i64, i64) = sqlx::query_as(
        "select pg_stat_get_xact_tuples_updated('executions'::regclass), \
                pg_stat_get_xact_tuples_hot_updated('executions'::regclass)",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    assert_eq!(written.len(), 60);
    assert_eq!((updated, hot), (60, 60), "every result a HOT update");
    let listed = |query: String| {
        let (app, function) = (&app, &function);
        async move {
            let page = app
                .get(&format!("/functions/{function}/executions?{query}"))
                .await;
            let items = page.body["items"].as_array().unwrap();
            let ids: Vec<String> = items
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned())
                .collect();
            let statuses: HashSet<String> = items
                .iter()
                .map(|e| e["status"].as_str().unwrap().to_owned())
                .collect();
            (
                ids,
                statuses,
                page.body["nextCursor"].as_str().map(str::to_owned),
            )
        }
    };
    // All were queued in one statement, so at one `created_at`: newest
    // first then means by id, descending.
    let newest_first = |range: std::ops::Range<usize>| -> Vec<String> {
        let mut ids: Vec<Uuid> = jobs[range].iter().map(|job| job.id).collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.iter().map(Uuid::to_string).collect()
    };
    let (first, first_statuses, cursor) = listed("status=FAILED&limit=10".to_owned()).await;
    let cursor = cursor.expect("a second page of failures");
    let (second, _, last) = listed(format!("status=FAILED&limit=10&cursor={cursor}")).await;
    assert_eq!([first, second].concat(), newest_first(40..55));
    assert_eq!(first_statuses, HashSet::from(["FAILED".to_owned()]));
    assert_eq!(last, None);
    let (cancelled, statuses, _) = listed("status=CANCELLED".to_owned()).await;
    assert_eq!(cancelled, newest_first(55..60));
    assert_eq!(statuses, HashSet::from(["CANCELLED".to_owned()]));
    let (succeeded, statuses, _) = listed("status=SUCCEEDED&limit=100".to_owned()).await;
    assert_eq!(succeeded, newest_first(0..40));
    assert_eq!(statuses, HashSet::from(["SUCCEEDED".to_owned()]));
    let (all, _, _) = listed("limit=100".to_owned()).await;
    assert_eq!(all, newest_first(0..60));
}
