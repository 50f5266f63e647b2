//! HTTP routes end to end (docs/triggers.md, "HTTP routes"): a real API,
//! compiler and executor; requests to `/run/{name}` and to custom prefixes
//! become runs of a real function, whose output becomes the response.

use plat_tests::{read, Reply, TestApp, Workers, MIGRATOR};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

/// Answers by the path it is called at: its input back as JSON, a response
/// envelope, a failure, a header it may not set, or a run that never ends.
const ECHO: &str = r#"
use serde_json::{json, Value};
pub fn handler(input: Value) -> Result<Value, String> {
    match input["path"].as_str().unwrap_or_default() {
        "/envelope" => Ok(json!({
            "statusCode": 201,
            "headers": {"x-made-by": "plat", "set-cookie": ["a=1", "b=2"]},
            "body": "created",
        })),
        "/fail" => Err("it broke".to_owned()),
        "/bad-header" => Ok(json!({"statusCode": 200, "headers": {"connection": "close"}})),
        "/spin" => loop {
            std::hint::black_box(0);
        },
        _ => Ok(json!({ "seen": input })),
    }
}
"#;

/// Registers the echo function as `name` and waits until it is READY.
async fn echo(app: &TestApp, name: &str) -> String {
    app.ready_function(name, ECHO, json!({ "timeoutMs": 2000 }))
        .await
}

async fn put_route(app: &TestApp, function: &str, route: Value) -> Reply {
    app.request(
        Method::PUT,
        &format!("/functions/{function}/route"),
        Some(route),
    )
    .await
}

/// A request the way an outside client sends it: any method, headers and
/// body, with `client`'s credentials (or none).
async fn call(
    app: &TestApp,
    client: &reqwest::Client,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> reqwest::Response {
    let mut request = client.request(method, format!("{}{path}", app.base_url));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .body(body.to_owned())
        .send()
        .await
        .expect("request sent")
}

fn execution_id(response: &reqwest::Response) -> String {
    response.headers()["plat-execution-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_function_behind_its_route_sees_the_request_and_answers_json(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = echo(&app, "echo").await;
    let saved = put_route(&app, "echo", json!({ "forwardHeaders": ["X-Custom"] })).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert_eq!(saved.body["urls"], json!(["/run/echo"]));
    assert_eq!(saved.body["public"], false);

    let response = call(
        &app,
        &app.client,
        Method::PATCH,
        "/run/echo/users/7?tag=a&tag=b&q=x%20y",
        &[
            ("content-type", "application/json"),
            ("x-custom", "kept"),
            ("x-other", "dropped"),
        ],
        r#"{"name": "Ada"}"#,
    )
    .await;
    let execution_id = execution_id(&response);
    let reply = read(response).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.content_type, "application/json");
    assert_eq!(
        reply.body["seen"],
        json!({
            "method": "PATCH",
            "path": "/users/7",
            "query": {"tag": "a,b", "q": "x y"},
            "rawQuery": "tag=a&tag=b&q=x%20y",
            "headers": {"x-custom": "kept"},
            "body": {"name": "Ada"},
            "isBase64Encoded": false,
        })
    );
    let execution = app.get(&format!("/executions/{execution_id}")).await.body;
    assert_eq!(execution["functionId"], id.as_str());
    assert_eq!(
        execution["trigger"],
        json!({"type": "http", "route": "/run/echo", "method": "PATCH", "path": "/run/echo/users/7"})
    );

    let text = read(
        call(
            &app,
            &app.client,
            Method::POST,
            "/run/echo",
            &[("content-type", "text/plain")],
            "hello",
        )
        .await,
    )
    .await;
    assert_eq!(text.body["seen"]["body"], "hello");
    assert_eq!(text.body["seen"]["path"], "/");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_envelope_sets_the_response_and_failures_are_problems(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    echo(&app, "echo").await;
    put_route(&app, "echo", json!({})).await;

    let created = call(
        &app,
        &app.client,
        Method::GET,
        "/run/echo/envelope",
        &[],
        "",
    )
    .await;
    let failed = call(&app, &app.client, Method::GET, "/run/echo/fail", &[], "").await;
    let failed_id = execution_id(&failed);
    let refused = call(
        &app,
        &app.client,
        Method::GET,
        "/run/echo/bad-header",
        &[],
        "",
    )
    .await;
    let spun = call(&app, &app.client, Method::GET, "/run/echo/spin", &[], "").await;

    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.headers()["x-made-by"], "plat");
    assert_eq!(
        created.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(created.headers().get_all("set-cookie").iter().count(), 2);
    assert!(created.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("sandbox"));
    assert_eq!(created.text().await.unwrap(), "created");
    let failed = read(failed).await;
    let detail = failed.problem(StatusCode::BAD_GATEWAY);
    assert!(detail.contains(&failed_id), "{detail}");
    assert!(detail.contains("HANDLER_ERROR"), "{detail}");
    let refused = read(refused).await;
    assert!(
        refused
            .problem(StatusCode::BAD_GATEWAY)
            .contains("connection"),
        "{}",
        refused.body
    );
    read(spun).await.problem(StatusCode::GATEWAY_TIMEOUT);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_public_route_needs_no_credentials_and_an_authenticated_one_checks_them(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    echo(&app, "open").await;
    echo(&app, "closed").await;
    let dev = app.create_user("dev@example.com", "DEV", None).await;
    let dev_client = plat_tests::client_with_key(&app.create_key(&dev).await);
    // Only the admin may see (hence run) `closed`.
    let restricted = app
        .request(
            Method::PUT,
            "/functions/closed",
            Some(json!({ "allowedUsers": [app.get("/me").await.body["id"]] })),
        )
        .await;
    assert!(restricted.status.is_success(), "{}", restricted.body);
    put_route(&app, "open", json!({ "public": true })).await;
    put_route(&app, "closed", json!({})).await;
    let anonymous = reqwest::Client::new();

    let open = call(&app, &anonymous, Method::GET, "/run/open", &[], "").await;
    let open_id = execution_id(&open);
    let open = read(open).await;
    let closed_anonymous =
        read(call(&app, &anonymous, Method::GET, "/run/closed", &[], "").await).await;
    let closed_dev = read(call(&app, &dev_client, Method::GET, "/run/closed", &[], "").await).await;
    let dev_may_not_configure = app
        .request_with(
            &dev_client,
            Method::PUT,
            "/functions/open/route",
            Some(json!({})),
        )
        .await;

    assert_eq!(open.status, StatusCode::OK, "{}", open.body);
    let execution = app.get(&format!("/executions/{open_id}")).await.body;
    assert_eq!(
        execution["createdBy"],
        app.get("/me").await.body["id"],
        "a public route runs as its owner"
    );
    closed_anonymous.problem(StatusCode::UNAUTHORIZED);
    closed_dev.problem(StatusCode::NOT_FOUND);
    dev_may_not_configure.problem(StatusCode::FORBIDDEN);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_public_route_over_its_rate_limit_answers_429(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    echo(&app, "echo").await;
    put_route(
        &app,
        "echo",
        json!({ "public": true, "rateLimit": { "perSec": 0.01, "burst": 2 } }),
    )
    .await;
    let anonymous = reqwest::Client::new();

    let mut statuses = Vec::new();
    for _ in 0..2 {
        statuses.push(
            call(&app, &anonymous, Method::GET, "/run/echo", &[], "")
                .await
                .status(),
        );
    }
    let limited = read(call(&app, &anonymous, Method::GET, "/run/echo", &[], "").await).await;

    assert_eq!(statuses, [StatusCode::OK, StatusCode::OK]);
    assert!(limited
        .problem(StatusCode::TOO_MANY_REQUESTS)
        .contains("too many requests"));
    assert!(limited.headers.contains_key("retry-after"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_custom_prefix_answers_and_prefixes_that_collide_are_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    echo(&app, "echo").await;
    app.create_function("other", ECHO, json!({})).await;
    let saved = put_route(
        &app,
        "echo",
        json!({ "pathPrefix": "/hooks/echo", "public": true }),
    )
    .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert_eq!(saved.body["urls"], json!(["/run/echo", "/hooks/echo"]));
    let anonymous = reqwest::Client::new();

    let below = read(
        call(
            &app,
            &anonymous,
            Method::GET,
            "/hooks/echo/deep/er?x=1",
            &[],
            "",
        )
        .await,
    )
    .await;
    let at = read(call(&app, &anonymous, Method::GET, "/hooks/echo", &[], "").await).await;
    let taken = put_route(&app, "other", json!({ "pathPrefix": "/hooks/echo" })).await;
    let under_api = put_route(&app, "other", json!({ "pathPrefix": "/functions/x" })).await;
    let under_run = put_route(&app, "other", json!({ "pathPrefix": "/run" })).await;
    let malformed = put_route(&app, "other", json!({ "pathPrefix": "/a/../b" })).await;
    let unknown = read(call(&app, &anonymous, Method::GET, "/hooks/nothing", &[], "").await).await;
    let no_route = app.get("/run/nothing").await;

    assert_eq!(below.status, StatusCode::OK, "{}", below.body);
    assert_eq!(below.body["seen"]["path"], "/deep/er");
    assert_eq!(at.body["seen"]["path"], "/");
    assert!(taken.problem(StatusCode::CONFLICT).contains("/hooks/echo"));
    assert!(under_api
        .problem(StatusCode::BAD_REQUEST)
        .contains("API's own paths"));
    under_run.problem(StatusCode::BAD_REQUEST);
    malformed.problem(StatusCode::BAD_REQUEST);
    // Not a route: the API's own answer to an unknown path, unchanged.
    unknown.problem(StatusCode::UNAUTHORIZED);
    assert!(no_route
        .problem(StatusCode::NOT_FOUND)
        .contains("no HTTP route"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_disabled_or_deleted_route_answers_404_and_the_route_reads_back(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    echo(&app, "echo").await;
    put_route(
        &app,
        "echo",
        json!({ "enabled": false, "forwardHeaders": ["x-b", "X-A"] }),
    )
    .await;

    let read_back = app.get("/functions/echo/route").await;
    let disabled = app.get("/run/echo").await;
    let deleted = app
        .request(Method::DELETE, "/functions/echo/route", None)
        .await;
    let gone = app.get("/functions/echo/route").await;
    let after = app.get("/run/echo").await;

    assert_eq!(read_back.status, StatusCode::OK);
    assert_eq!(read_back.body["enabled"], false);
    assert_eq!(read_back.body["forwardHeaders"], json!(["x-a", "x-b"]));
    assert_eq!(
        read_back.body["rateLimit"],
        json!({ "perSec": 10.0, "burst": 20 })
    );
    disabled.problem(StatusCode::NOT_FOUND);
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    gone.problem(StatusCode::NOT_FOUND);
    after.problem(StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_caller_over_their_queue_quota_gets_429_and_an_unfinished_run_504(pool: PgPool) {
    // No executor: runs stay QUEUED, so the first request holds the quota.
    let config = plat_api::ApiConfig {
        max_queued_per_user: 1,
        ..plat_tests::api_config()
    };
    let app = TestApp::spawn_configured(pool, Workers::COMPILER_ONLY, config).await;
    echo(&app, "echo").await;
    put_route(&app, "echo", json!({})).await;
    let dev = app.create_user("dev@example.com", "DEV", None).await;
    let dev_client = plat_tests::client_with_key(&app.create_key(&dev).await);
    let first = {
        let (client, url) = (dev_client.clone(), format!("{}/run/echo", app.base_url));
        tokio::spawn(async move { client.get(url).send().await.expect("request sent") })
    };
    app.wait_until(plat_common::notify::EXECUTION_JOBS, || async {
        (app.count("executions").await == 1).then_some(())
    })
    .await;

    let over = read(call(&app, &dev_client, Method::GET, "/run/echo", &[], "").await).await;
    let unfinished = first.await.unwrap();
    let queued_id = execution_id(&unfinished);
    let unfinished = read(unfinished).await;

    assert!(over
        .problem(StatusCode::TOO_MANY_REQUESTS)
        .contains("queue quota"));
    assert!(over.headers.contains_key("retry-after"));
    let detail = unfinished.problem(StatusCode::GATEWAY_TIMEOUT);
    assert!(detail.contains(&queued_id), "{detail}");
    assert!(detail.contains("QUEUED"), "{detail}");
}
