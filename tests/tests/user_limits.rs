//! What one user may take from a shared platform (docs/security.md): one
//! rate limit per user whatever the number of keys, a batch paying for
//! each of its inputs, a cap on live API keys; and a credential cache that
//! one user's revocations cannot empty for everyone else.

use chrono::{DateTime, Utc};
use plat_common::notify;
use plat_tests::{client_with_key, Reply, TestApp, Workers, MIGRATOR};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

/// A TypeScript function: READY in milliseconds.
const ECHO_TS: &str = "export default (input: unknown) => ({ echo: input });\n";

/// A rate that refills one request per thousand seconds: within a test, a
/// bucket holds exactly what it started with minus what was spent.
const NO_REFILL: f64 = 0.001;

/// `api_keys.last_used_at` of the key `id`.
async fn last_used(pool: &PgPool, id: Uuid) -> Option<DateTime<Utc>> {
    let (at,): (Option<DateTime<Utc>>,) =
        sqlx::query_as("select last_used_at from api_keys where id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap();
    at
}

/// Asks `client` to create an API key for `user_id` on `base_url`.
async fn new_key(client: &reqwest::Client, base_url: &str, user_id: &str) -> Reply {
    let response = client
        .post(format!("{base_url}/api-keys"))
        .json(&json!({ "userId": user_id, "name": "limits" }))
        .send()
        .await
        .expect("request sent");
    plat_tests::read(response).await
}

/// The created key's id, and a client that sends it.
fn id_and_key(reply: &Reply) -> (Uuid, reqwest::Client) {
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let id = reply.body["id"].as_str().unwrap().parse().unwrap();
    (id, client_with_key(reply.body["key"].as_str().unwrap()))
}

async fn me(client: &reqwest::Client, base_url: &str) -> StatusCode {
    client
        .get(format!("{base_url}/me"))
        .send()
        .await
        .expect("request sent")
        .status()
}

async fn batch(app: &TestApp, client: &reqwest::Client, function: &str, inputs: usize) -> Reply {
    let inputs: Vec<Value> = (0..inputs).map(|n| json!({ "n": n })).collect();
    app.request_with(
        client,
        Method::POST,
        &format!("/functions/{function}/executions/batch"),
        Some(json!({ "inputs": inputs })),
    )
    .await
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn all_api_keys_of_a_user_share_one_rate_limit(pool: PgPool) {
    let config = plat_api::ApiConfig {
        rate_limit_dev_per_sec: NO_REFILL,
        rate_limit_dev_burst: 3,
        ..plat_tests::api_config()
    };
    let app = TestApp::spawn_configured(pool, Workers::NONE, config).await;
    let dev = app.create_user("dev@example.com", "DEV", None).await;
    let first = client_with_key(&app.create_key(&dev).await);
    let second = client_with_key(&app.create_key(&dev).await);
    let other = app.create_user("other@example.com", "DEV", None).await;
    let other = client_with_key(&app.create_key(&other).await);

    for _ in 0..3 {
        assert_eq!(me(&first, &app.base_url).await, StatusCode::OK);
    }
    let limited = app.request_with(&second, Method::GET, "/me", None).await;

    let detail = limited.problem(StatusCode::TOO_MANY_REQUESTS);
    assert!(
        detail.contains("all their API keys") && detail.contains("PLAT_RATE_LIMIT_DEV_BURST"),
        "the refusal names the limit and its settings: {detail}"
    );
    assert!(limited.headers.contains_key("retry-after"));
    assert_eq!(
        me(&other, &app.base_url).await,
        StatusCode::OK,
        "another user has a bucket of their own"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_batch_of_n_inputs_costs_n_requests_and_one_over_the_burst_is_refused_as_such(
    pool: PgPool,
) {
    let config = plat_api::ApiConfig {
        rate_limit_dev_per_sec: NO_REFILL,
        rate_limit_dev_burst: 10,
        ..plat_tests::api_config()
    };
    let app = TestApp::spawn_configured(pool, Workers::COMPILER_ONLY, config).await;
    let function = app
        .ready_function_in("typescript", "public-echo", ECHO_TS, json!({}))
        .await;
    let dev = app.create_user("dev@example.com", "DEV", None).await;
    let dev = client_with_key(&app.create_key(&dev).await);

    // 10 in the bucket. Over the burst: it could never be paid, so 400, not 429.
    let too_big = batch(&app, &dev, &function, 11).await;
    let detail = too_big.problem(StatusCode::BAD_REQUEST);
    assert!(
        detail.contains("bursts of 10")
            && detail.contains("PLAT_RATE_LIMIT_DEV_BURST")
            && detail.contains("split it"),
        "{detail}"
    );
    // 9 left: six inputs cost six.
    let queued = batch(&app, &dev, &function, 6).await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{}", queued.body);
    // 3 left: four inputs do not fit; the refusal spends only the request's own one.
    let refused = batch(&app, &dev, &function, 4).await;
    let detail = refused.problem(StatusCode::TOO_MANY_REQUESTS);
    assert!(
        detail.contains("a batch of 4 inputs costs 4 requests")
            && detail.contains("PLAT_RATE_LIMIT_DEV_PER_SEC"),
        "{detail}"
    );
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);

    // Exactly 2 left.
    assert_eq!(me(&dev, &app.base_url).await, StatusCode::OK);
    assert_eq!(me(&dev, &app.base_url).await, StatusCode::OK);
    assert_eq!(me(&dev, &app.base_url).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        app.count("executions").await,
        6,
        "only the paid-for batch was queued"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_user_holds_at_most_the_configured_number_of_live_api_keys(pool: PgPool) {
    let config = plat_api::ApiConfig {
        max_api_keys_per_user: 2,
        ..plat_tests::api_config()
    };
    let app = TestApp::spawn_configured(pool, Workers::NONE, config).await;
    let dev = app.create_user("dev@example.com", "DEV", None).await;
    let (first, first_key) = id_and_key(&new_key(&app.client, &app.base_url, &dev).await);
    let (_, own_key) = id_and_key(&new_key(&app.client, &app.base_url, &dev).await);

    // An admin creating for the user is held to the user's cap, as is the user.
    for client in [&app.client, &own_key] {
        let refused = new_key(client, &app.base_url, &dev).await;
        let detail = refused.problem(StatusCode::CONFLICT);
        assert!(
            detail.contains("PLAT_MAX_API_KEYS_PER_USER = 2"),
            "{detail}"
        );
    }

    // Revoked and expired keys do not count.
    let revoked = app
        .request_with(
            &first_key,
            Method::DELETE,
            &format!("/api-keys/{first}"),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let (third, _) = id_and_key(&new_key(&own_key, &app.base_url, &dev).await);
    sqlx::query("update api_keys set expires_at = now() - interval '1 second' where id = $1")
        .bind(third)
        .execute(&app.pool)
        .await
        .unwrap();
    id_and_key(&new_key(&own_key, &app.base_url, &dev).await);

    // Concurrent creations count one after another: never past the cap.
    let racer = app.create_user("racer@example.com", "DEV", None).await;
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let (client, base_url, racer) =
                (app.client.clone(), app.base_url.clone(), racer.clone());
            tokio::spawn(async move { new_key(&client, &base_url, &racer).await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.expect("request task"));
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|status| **status == StatusCode::CREATED)
            .count(),
        2,
        "{statuses:?}"
    );
    assert!(statuses
        .iter()
        .all(|status| [StatusCode::CREATED, StatusCode::CONFLICT].contains(status)));
}

/// Two API processes on one database whose caches keep credentials far
/// longer than any test lasts, so only an invalidation can drop one: the
/// TTL backstop never decides an assertion.
async fn two_apis_with_long_lived_caches(pool: PgPool) -> (TestApp, String) {
    let config = plat_api::ApiConfig {
        auth_cache_ttl_secs: 3600,
        ..plat_tests::api_config()
    };
    let mut app = TestApp::spawn_configured(pool, Workers::NONE, config.clone()).await;
    let other = app.start_api(config).await;
    plat_tests::wait_until_ready(&other).await;
    (app, other)
}

/// Waits until `client` is refused by the API at `base_url`: a change made
/// through another API process has reached this one.
async fn until_refused(app: &TestApp, client: &reqwest::Client, base_url: &str) {
    app.wait_until(notify::AUTH_CHANGED, || async move {
        (me(client, base_url).await == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
}

/// A user whose key is cached in the API at `base_url` and then revoked
/// behind the platform's back (no notification): from then on, only a
/// cache hit in that process can still answer for it.
async fn cached_then_revoked_quietly(
    app: &TestApp,
    base_url: &str,
    email: &str,
) -> reqwest::Client {
    let user = app.create_user(email, "DEV", None).await;
    let (id, key) = id_and_key(&new_key(&app.client, &app.base_url, &user).await);
    assert_eq!(me(&key, base_url).await, StatusCode::OK);
    sqlx::query("update api_keys set revoked_at = now() where id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    key
}

/// Makes sure the API at `base_url` listens for changes: a key it cached,
/// revoked through the first API, is refused there once it has heard.
async fn until_listening(app: &TestApp, base_url: &str, user: &str) {
    let (id, key) = id_and_key(&new_key(&app.client, &app.base_url, user).await);
    assert_eq!(me(&key, base_url).await, StatusCode::OK);
    let revoked = app
        .request(Method::DELETE, &format!("/api-keys/{id}"), None)
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    until_refused(app, &key, base_url).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn revoking_a_key_ends_it_in_every_api_process_and_leaves_other_users_cached(pool: PgPool) {
    let (app, other_api) = two_apis_with_long_lived_caches(pool).await;
    let owner = app.create_user("owner@example.com", "DEV", None).await;
    until_listening(&app, &other_api, &owner).await;
    let (revoked, revoked_key) = id_and_key(&new_key(&app.client, &app.base_url, &owner).await);
    assert_eq!(me(&revoked_key, &other_api).await, StatusCode::OK);
    let bystander = cached_then_revoked_quietly(&app, &other_api, "bystander@example.com").await;

    // The owner revokes their own key through the first API.
    let revoke = app
        .request_with(
            &revoked_key,
            Method::DELETE,
            &format!("/api-keys/{revoked}"),
            None,
        )
        .await;
    assert_eq!(revoke.status, StatusCode::NO_CONTENT);

    until_refused(&app, &revoked_key, &other_api).await;
    assert_eq!(
        me(&bystander, &other_api).await,
        StatusCode::OK,
        "another user's credential stayed cached in the other process"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn disabling_a_user_drops_all_their_cached_credentials_and_no_one_elses(pool: PgPool) {
    let (app, other_api) = two_apis_with_long_lived_caches(pool).await;
    let user = app.create_user("disabled@example.com", "DEV", None).await;
    until_listening(&app, &other_api, &user).await;
    let first = client_with_key(&app.create_key(&user).await);
    let second = client_with_key(&app.create_key(&user).await);
    for key in [&first, &second] {
        assert_eq!(me(key, &other_api).await, StatusCode::OK);
    }
    let bystander = cached_then_revoked_quietly(&app, &other_api, "bystander@example.com").await;

    let disable = app
        .request(
            Method::PUT,
            &format!("/users/{user}"),
            Some(json!({ "disabled": true })),
        )
        .await;
    assert_eq!(disable.status, StatusCode::OK, "{}", disable.body);

    until_refused(&app, &first, &other_api).await;
    assert_eq!(
        me(&second, &other_api).await,
        StatusCode::UNAUTHORIZED,
        "one notification drops every credential of the user"
    );
    assert_eq!(
        me(&bystander, &other_api).await,
        StatusCode::OK,
        "another user's credential stayed cached"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_keys_last_used_at_is_written_at_most_once_a_minute(pool: PgPool) {
    let mut app = TestApp::spawn_with(pool, Workers::NONE).await;
    let second_api = app.start_api(plat_tests::api_config()).await;
    let third_api = app.start_api(plat_tests::api_config()).await;
    plat_tests::wait_until_ready(&second_api).await;
    plat_tests::wait_until_ready(&third_api).await;
    let user = app.create_user("dev@example.com", "DEV", None).await;
    let (id, key) = id_and_key(&new_key(&app.client, &app.base_url, &user).await);

    // Each API process looks the key up in the database once (its cache is empty).
    assert_eq!(me(&key, &app.base_url).await, StatusCode::OK);
    let first = last_used(&app.pool, id)
        .await
        .expect("the first use is recorded");
    assert_eq!(me(&key, &second_api).await, StatusCode::OK);
    assert_eq!(
        last_used(&app.pool, id).await,
        Some(first),
        "a lookup within the minute writes nothing"
    );

    // Once the stamp is over a minute old, the next lookup writes it again.
    sqlx::query("update api_keys set last_used_at = now() - interval '61 seconds' where id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(me(&key, &third_api).await, StatusCode::OK);
    assert!(last_used(&app.pool, id).await.unwrap() > first);
}
