//! Shared fairly: one owner's backlog does not hold back another owner's runs
//! (nor one function's backlog another function of the same owner), and a
//! user may have only so many executions queued or running.
//! docs/architecture.md, "Fairness and quotas", describes the policy.

use std::time::Duration;

use plat_common::queue::execute::{
    self, BatchEnqueued, Enqueued, ExecutionJob, Finished, NewBatch, NewExecution,
};
use plat_tests::{client_with_key, executor_config, TestApp, Workers, HELLO, MIGRATOR};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

/// Queues `n` runs of `function` for `owner` in one batch; returns their ids.
async fn queue_batch(pool: &PgPool, owner: Uuid, function: Uuid, n: usize) -> Vec<Uuid> {
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    let inputs = vec!["{}"; n];
    let queued = execute::enqueue_batch(
        pool,
        NewBatch {
            function_id: function,
            version: 1,
            ids: &ids,
            inputs: &inputs,
            created_by: Some(owner),
            request_id: None,
            max_in_flight: None,
            webhook_urls: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(queued, BatchEnqueued::Queued);
    ids
}

/// Queues one run as a single execute does, with the owner's quota.
async fn queue_one(pool: &PgPool, owner: Uuid, function: Uuid, quota: Option<i64>) -> Enqueued {
    let new = one_run(owner, function, quota);
    execute::enqueue(&mut pool.acquire().await.unwrap(), new)
        .await
        .unwrap()
}

/// One run of `function` for `owner`, as a single execute queues it.
fn one_run(owner: Uuid, function: Uuid, quota: Option<i64>) -> NewExecution<'static> {
    NewExecution {
        id: Uuid::now_v7(),
        function_id: function,
        version: 1,
        input_json: "{}",
        idempotency_key: None,
        created_by: Some(owner),
        request_id: None,
        wake_executors: false,
        max_in_flight: quota,
        trigger: &plat_common::Trigger::Api,
        webhook_urls: None,
    }
}

/// Claims `claims` batches of `size`, as an executor would.
async fn claim(pool: &PgPool, claims: usize, size: i64) -> Vec<ExecutionJob> {
    let mut jobs = Vec::new();
    for _ in 0..claims {
        jobs.extend(
            execute::claim(pool, "fairness", Duration::from_secs(60), size)
                .await
                .unwrap(),
        );
    }
    jobs
}

async fn succeed(pool: &PgPool, jobs: &[ExecutionJob]) {
    let done = Finished::succeeded("null", 1);
    for chunk in jobs.chunks(execute::MAX_COMPLETION_BATCH) {
        let results: Vec<_> = chunk.iter().map(|job| (job, &done)).collect();
        let written = execute::complete_batch(pool, &results).await.unwrap();
        assert_eq!(written.len(), chunk.len());
    }
}

async fn in_flight(pool: &PgPool, owner: Uuid) -> i64 {
    sqlx::query_scalar(
        "select coalesce(sum(in_flight), 0)::bigint from queue_in_flight where owner_id = $1",
    )
    .bind(owner)
    .fetch_one(pool)
    .await
    .unwrap()
}

fn owned_by(jobs: &[ExecutionJob], ids: &[Uuid]) -> usize {
    jobs.iter().filter(|job| ids.contains(&job.id)).count()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn one_users_backlog_does_not_hold_back_another_users_runs(pool: PgPool) {
    let (alice, bob, function) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    queue_batch(&pool, alice, function, 1000).await;
    let mut bobs = Vec::new();
    for _ in 0..5 {
        let id = queue_batch(&pool, bob, function, 1).await;
        bobs.extend(id);
    }

    let first = claim(&pool, 2, 16).await;

    assert_eq!(
        owned_by(&first, &bobs),
        5,
        "Bob's 5 runs come within the first two claims of 16, not after Alice's 1000"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_users_runs_of_another_function_are_not_held_back_by_their_own_backlog(pool: PgPool) {
    let (alice, busy, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    queue_batch(&pool, alice, busy, 1000).await;
    let mut others = Vec::new();
    for _ in 0..5 {
        others.extend(queue_batch(&pool, alice, other, 1).await);
    }

    let first = claim(&pool, 2, 16).await;

    assert_eq!(
        owned_by(&first, &others),
        5,
        "the other function's 5 runs come within the first two claims of 16"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn functions_of_one_user_share_that_users_part_not_more(pool: PgPool) {
    // Alice's two functions together get one owner's part next to Bob's.
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let (f, g, h) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let bobs = queue_batch(&pool, bob, h, 300).await;
    let mut alices = Vec::new();
    for _ in 0..150 {
        alices.extend(queue_batch(&pool, alice, f, 1).await);
        alices.extend(queue_batch(&pool, alice, g, 1).await);
    }

    let first = claim(&pool, 4, 50).await;

    let (a, b) = (owned_by(&first, &alices), owned_by(&first, &bobs));
    assert!(
        (90..=110).contains(&b),
        "Bob gets about half of the first 200 runs, got {b} (Alice {a})"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_owner_who_was_idle_cannot_bank_credit(pool: PgPool) {
    let (alice, bob, function) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    // Bob ran once long ago; since then Alice has been served 200 runs.
    queue_batch(&pool, bob, function, 1).await;
    succeed(&pool, &claim(&pool, 1, 1).await).await;
    let alices = queue_batch(&pool, alice, function, 300).await;
    assert_eq!(claim(&pool, 4, 50).await.len(), 200);

    // Now Bob queues a backlog of his own.
    queue_batch(&pool, bob, function, 300).await;
    let next = claim(&pool, 2, 50).await;

    let served = owned_by(&next, &alices);
    assert!(
        (40..=60).contains(&served),
        "Alice's last 100 share the next 100 claims with Bob; she got {served}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_owner_whose_backlog_has_drained_is_not_held_back_for_it(pool: PgPool) {
    let (alice, bob, function) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    queue_batch(&pool, alice, function, 500).await;
    let all = claim(&pool, 10, 50).await;
    succeed(&pool, &all).await;
    assert_eq!(in_flight(&pool, alice).await, 0);

    queue_batch(&pool, bob, function, 100).await;
    let mut later = Vec::new();
    for _ in 0..10 {
        later.extend(queue_batch(&pool, alice, function, 1).await);
    }
    let first = claim(&pool, 2, 16).await;

    assert_eq!(
        owned_by(&first, &later),
        10,
        "Alice's new runs share the queue with Bob's at once"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_way_out_of_the_queue_leaves_the_owners_count(pool: PgPool) {
    let (alice, function) = (Uuid::now_v7(), Uuid::now_v7());
    let ids = queue_batch(&pool, alice, function, 10).await;
    assert_eq!(in_flight(&pool, alice).await, 10);

    // Two cancelled while queued, five claimed of which three succeed and
    // one is handed back, then the function is deleted with what is queued.
    for id in &ids[..2] {
        execute::cancel(&pool, *id).await.unwrap();
    }
    let running = claim(&pool, 1, 5).await;
    succeed(&pool, &running[..3]).await;
    execute::release(&pool, running[3].lease_token)
        .await
        .unwrap();
    assert_eq!(in_flight(&pool, alice).await, 5, "1 running + 4 queued");
    let mut conn = pool.acquire().await.unwrap();
    execute::cancel_queued_of_function(&mut conn, function)
        .await
        .unwrap();

    assert_eq!(in_flight(&pool, alice).await, 1, "the one still running");
    let fixed: i64 = sqlx::query_scalar("select plat_recount_queue()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(fixed, 0, "the counts were exact");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_queue_refuses_runs_over_the_owners_quota(pool: PgPool) {
    let (alice, function) = (Uuid::now_v7(), Uuid::now_v7());
    for _ in 0..3 {
        assert_eq!(
            queue_one(&pool, alice, function, Some(3)).await,
            Enqueued::New
        );
    }
    assert_eq!(
        queue_one(&pool, alice, function, Some(3)).await,
        Enqueued::OverQuota
    );
    assert_eq!(in_flight(&pool, alice).await, 3);
    let executions: i64 = sqlx::query_scalar("select count(*) from executions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(executions, 3, "nothing was created for the refused run");
}

/// A DEV with `PLAT_MAX_QUEUED_PER_USER=3` and no executor running (so
/// runs stay queued); the function is public.
async fn app_with_quota_of_three(pool: PgPool) -> (TestApp, String, reqwest::Client) {
    let config = plat_api::ApiConfig {
        max_queued_per_user: 3,
        ..plat_tests::api_config()
    };
    let app = TestApp::spawn_configured(pool, Workers::COMPILER_ONLY, config).await;
    let function = app.ready_function("quota", HELLO, json!({})).await;
    let dev = app.create_user("dev@example.com", "DEV", None).await;
    let dev = client_with_key(&app.create_key(&dev).await);
    (app, function, dev)
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_dev_over_the_queue_quota_gets_429_naming_the_limit_until_runs_finish(pool: PgPool) {
    let (mut app, function, dev) = app_with_quota_of_three(pool).await;
    let execute = format!("/functions/{function}/execute?wait=0");
    for i in 0..3 {
        let reply = app
            .request_with(&dev, Method::POST, &execute, Some(json!({ "name": i })))
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    }

    let refused = app
        .request_with(&dev, Method::POST, &execute, Some(json!({ "name": 3 })))
        .await;

    let detail = refused.problem(StatusCode::TOO_MANY_REQUESTS);
    assert!(
        detail.contains("at most 3 executions queued or running")
            && detail.contains("PLAT_MAX_QUEUED_PER_USER"),
        "{detail}"
    );
    assert!(
        refused.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert_eq!(app.count("executions").await, 3);

    // Once the runs have finished there is room again.
    app.start_executor(executor_config()).await;
    app.wait_until(plat_common::notify::EXECUTION_FINISHED, || async {
        let done = app.count("executions where status = 'SUCCEEDED'").await;
        (done == 3).then_some(())
    })
    .await;
    let again = app
        .request_with(&dev, Method::POST, &execute, Some(json!({ "name": 4 })))
        .await;
    // With an executor running, `wait=0` may already find the run finished
    // (200) or still queued (202); either way it was accepted.
    assert!(
        [StatusCode::OK, StatusCode::ACCEPTED].contains(&again.status),
        "{} {}",
        again.status,
        again.body
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn admins_are_exempt_from_the_queue_quota(pool: PgPool) {
    let (app, function, _dev) = app_with_quota_of_three(pool).await;

    for i in 0..5 {
        let reply = app.execute(&function, json!({ "name": i }), 0).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    }
    let batch = app
        .request(
            Method::POST,
            &format!("/functions/{function}/executions/batch"),
            Some(json!({ "inputs": [{}, {}, {}, {}] })),
        )
        .await;
    assert_eq!(batch.status, StatusCode::ACCEPTED, "{}", batch.body);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_batch_that_would_go_over_the_quota_is_refused_whole(pool: PgPool) {
    let (app, function, dev) = app_with_quota_of_three(pool).await;
    let batch = format!("/functions/{function}/executions/batch");
    let two = json!({ "inputs": [{ "name": "a" }, { "name": "b" }] });
    let queued = app
        .request_with(&dev, Method::POST, &batch, Some(two.clone()))
        .await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{}", queued.body);

    let refused = app
        .request_with(&dev, Method::POST, &batch, Some(two))
        .await;

    let detail = refused.problem(StatusCode::TOO_MANY_REQUESTS);
    assert!(detail.contains("would queue 2 more"), "{detail}");
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(app.count("executions").await, 2, "none of the batch queued");
    let one = json!({ "inputs": [{ "name": "c" }] });
    let fits = app
        .request_with(&dev, Method::POST, &batch, Some(one))
        .await;
    assert_eq!(fits.status, StatusCode::ACCEPTED, "{}", fits.body);
}

/// `n` connections of their own whose statements use different lanes and
/// count shards (`plat_count_shard`), as busy API processes' do.
async fn connections_on_distinct_lanes(pool: &PgPool, n: usize) -> Vec<sqlx::PgConnection> {
    use sqlx::Connection as _;
    let (mut chosen, mut lanes, mut others) = (Vec::new(), Vec::new(), Vec::new());
    while chosen.len() < n {
        let mut conn = sqlx::PgConnection::connect_with(&pool.connect_options())
            .await
            .unwrap();
        let lane: i16 = sqlx::query_scalar("select plat_count_shard()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if lanes.contains(&lane) {
            // Kept open so that the next connection gets another process.
            others.push(conn);
        } else {
            lanes.push(lane);
            chosen.push(conn);
        }
    }
    chosen
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_flow_queued_from_many_connections_gets_one_flows_part(pool: PgPool) {
    let (alice, bob, f, g) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let bobs = queue_batch(&pool, bob, g, 300).await;
    let mut lanes = connections_on_distinct_lanes(&pool, 4).await;
    let mut alices = Vec::new();
    for i in 0..200 {
        let new = one_run(alice, f, None);
        let conn = &mut lanes[i % 4];
        assert_eq!(execute::enqueue(conn, new).await.unwrap(), Enqueued::New);
        alices.push(new.id);
    }

    let first = claim(&pool, 4, 50).await;

    let (a, b) = (owned_by(&first, &alices), owned_by(&first, &bobs));
    assert!(
        (85..=115).contains(&b),
        "Bob gets about half of the first 200 runs although Alice queued from 4 connections, got {b} (Alice {a})"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn concurrent_enqueues_of_one_user_never_go_over_the_quota(pool: PgPool) {
    let (alice, function) = (Uuid::now_v7(), Uuid::now_v7());
    let tries: Vec<_> = (0..40)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { queue_one(&pool, alice, function, Some(10)).await })
        })
        .collect();
    let mut queued = 0;
    for attempt in tries {
        if attempt.await.unwrap() == Enqueued::New {
            queued += 1;
        }
    }

    assert_eq!(queued, 10, "exactly the quota was queued");
    assert_eq!(in_flight(&pool, alice).await, 10);
    let executions: i64 = sqlx::query_scalar("select count(*) from executions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(executions, 10);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn counts_stay_exact_when_many_connections_queue_and_finish_at_once(pool: PgPool) {
    let (alice, function) = (Uuid::now_v7(), Uuid::now_v7());
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    // Half as a user under a quota would, half exempt.
                    let quota = (i % 2 == 0).then_some(1_000_000);
                    assert_eq!(
                        queue_one(&pool, alice, function, quota).await,
                        Enqueued::New
                    );
                    let jobs = claim(&pool, 1, 2).await;
                    succeed(&pool, &jobs).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(in_flight(&pool, alice).await, 200 - finished(&pool).await);
    succeed(&pool, &claim(&pool, 1, 1000).await).await;

    assert_eq!(in_flight(&pool, alice).await, 0);
    let fixed: i64 = sqlx::query_scalar("select plat_recount_queue()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(fixed, 0, "the counts were exact");
}

async fn finished(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from executions where finished_at is not null")
        .fetch_one(pool)
        .await
        .unwrap()
}
