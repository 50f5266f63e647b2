//! Every refused request gets a 4xx `application/problem+json` that says why,
//! never a 500; and lists page correctly.

use std::collections::HashSet;

use plat_tests::{TestApp, Workers, HELLO, MIGRATOR};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

async fn api_only(pool: PgPool) -> TestApp {
    TestApp::spawn_with(pool, Workers::NONE).await
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn malformed_json_is_a_bad_request(pool: PgPool) {
    let app = api_only(pool).await;

    let reply = app
        .request_raw(
            Method::POST,
            "/functions",
            "application/json",
            b"{\"name\": ".to_vec(),
        )
        .await;

    assert!(
        reply.problem(StatusCode::BAD_REQUEST).contains("EOF"),
        "{}",
        reply.body
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_missing_field_is_named(pool: PgPool) {
    let app = api_only(pool).await;

    let reply = app
        .request(
            Method::POST,
            "/functions",
            Some(json!({ "name": "x", "language": "rust" })),
        )
        .await;

    assert!(
        reply
            .problem(StatusCode::BAD_REQUEST)
            .contains("missing field `source`"),
        "{}",
        reply.body
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_unknown_field_is_refused_rather_than_ignored(pool: PgPool) {
    let app = api_only(pool).await;

    let reply = app
        .request(
            Method::POST,
            "/functions",
            Some(json!({ "name": "x", "language": "rust", "source": HELLO, "timeout": 5 })),
        )
        .await;

    assert!(
        reply
            .problem(StatusCode::BAD_REQUEST)
            .contains("unknown field `timeout`"),
        "{}",
        reply.body
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_unknown_language_lists_the_supported_ones(pool: PgPool) {
    let app = api_only(pool).await;

    let reply = app
        .request(
            Method::POST,
            "/functions",
            Some(json!({ "name": "x", "language": "cobol", "source": HELLO })),
        )
        .await;

    let detail = reply.problem(StatusCode::BAD_REQUEST);
    assert!(
        detail.contains("cobol") && detail.contains("rust"),
        "{detail}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn invalid_names_and_configs_are_refused_with_the_rule(pool: PgPool) {
    let app = api_only(pool).await;
    let post = |body: Value| app.request(Method::POST, "/functions", Some(body));

    let bad_name = post(json!({ "name": "has space", "language": "rust", "source": HELLO })).await;
    let zero_timeout =
        post(json!({ "name": "x", "language": "rust", "source": HELLO, "executionConfig": { "timeoutMs": 0 } })).await;
    let huge_memory = post(
        json!({ "name": "x", "language": "rust", "source": HELLO, "executionConfig": { "memoryLimitMb": 1_000_000 } }),
    )
    .await;
    let wrong_type = post(json!({ "name": "x", "language": "rust", "source": 42 })).await;

    assert!(bad_name.problem(StatusCode::BAD_REQUEST).contains("`name`"));
    assert!(zero_timeout
        .problem(StatusCode::BAD_REQUEST)
        .contains("timeoutMs"));
    assert!(huge_memory
        .problem(StatusCode::BAD_REQUEST)
        .contains("memoryLimitMb"));
    assert!(wrong_type
        .problem(StatusCode::BAD_REQUEST)
        .contains("source"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_body_that_is_not_json_is_an_unsupported_media_type(pool: PgPool) {
    let app = api_only(pool).await;

    let reply = app
        .request_raw(Method::POST, "/functions", "text/plain", b"name=x".to_vec())
        .await;

    assert!(reply
        .problem(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        .contains("application/json"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_source_over_the_limit_is_too_large(pool: PgPool) {
    // The harness sets the source limit to 64 KiB.
    let app = api_only(pool).await;
    let source = format!("{HELLO}\n// {}", "x".repeat(70 * 1024));

    let reply = app
        .request(
            Method::POST,
            "/functions",
            Some(json!({ "name": "big", "language": "rust", "source": source })),
        )
        .await;

    assert!(
        reply
            .problem(StatusCode::PAYLOAD_TOO_LARGE)
            .contains("65536"),
        "{}",
        reply.body
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_duplicate_name_is_a_conflict(pool: PgPool) {
    let app = api_only(pool).await;
    app.create_function("twice", HELLO, json!({})).await;

    let reply = app
        .request(
            Method::POST,
            "/functions",
            Some(json!({ "name": "twice", "language": "rust", "source": HELLO })),
        )
        .await;

    assert!(reply.problem(StatusCode::CONFLICT).contains("twice"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn unknown_functions_executions_and_routes_are_not_found(pool: PgPool) {
    let app = api_only(pool).await;
    let nobody = "0190a0e4-7c3e-7000-8000-000000000000";

    app.get(&format!("/functions/{nobody}"))
        .await
        .problem(StatusCode::NOT_FOUND);
    app.get("/functions/no-such-name")
        .await
        .problem(StatusCode::NOT_FOUND);
    app.execute(nobody, json!({}), 0)
        .await
        .problem(StatusCode::NOT_FOUND);
    app.get(&format!("/executions/{nobody}"))
        .await
        .problem(StatusCode::NOT_FOUND);
    app.get("/executions/not-a-uuid")
        .await
        .problem(StatusCode::NOT_FOUND);
    app.request(Method::DELETE, &format!("/functions/{nobody}"), None)
        .await
        .problem(StatusCode::NOT_FOUND);
    app.get("/nowhere").await.problem(StatusCode::NOT_FOUND);
    app.request(Method::PATCH, "/functions", None)
        .await
        .problem(StatusCode::METHOD_NOT_ALLOWED);
}

/// Execution input errors, checked on a function that is READY (the
/// function's row exists; no worker is needed to refuse the input).
#[sqlx::test(migrator = "MIGRATOR")]
async fn execution_input_errors_are_refused_before_queueing(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::COMPILER_ONLY).await;
    let id = app.ready_function("inputs", HELLO, json!({})).await;
    let path = format!("/functions/{id}/execute?wait=0");

    let not_json = app
        .request_raw(Method::POST, &path, "application/json", b"{oops".to_vec())
        .await;
    let too_big = app
        .request(
            Method::POST,
            &path,
            Some(json!({ "blob": "x".repeat(70 * 1024) })),
        )
        .await;
    let bad_wait = app
        .request(
            Method::POST,
            &format!("/functions/{id}/execute?wait=soon"),
            Some(json!({})),
        )
        .await;
    let long_wait = app
        .request(
            Method::POST,
            &format!("/functions/{id}/execute?wait=100000"),
            Some(json!({})),
        )
        .await;

    assert!(not_json
        .problem(StatusCode::BAD_REQUEST)
        .contains("not valid JSON"));
    assert!(
        too_big
            .problem(StatusCode::PAYLOAD_TOO_LARGE)
            .contains("65536"),
        "{}",
        too_big.body
    );
    assert!(bad_wait.problem(StatusCode::BAD_REQUEST).contains("wait"));
    assert!(long_wait.problem(StatusCode::BAD_REQUEST).contains("wait"));
    let queued = app.count("executions").await;
    assert_eq!(queued, 0, "refused requests queue nothing");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_empty_body_runs_the_function_with_null_input(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::COMPILER_ONLY).await;
    let id = app.ready_function("empty-input", HELLO, json!({})).await;

    let reply = app
        .request_raw(
            Method::POST,
            &format!("/functions/{id}/execute?wait=0"),
            "text/plain",
            Vec::new(),
        )
        .await;

    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert_eq!(reply.body["input"], Value::Null);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn functions_page_newest_first_without_gaps_or_repeats(pool: PgPool) {
    let app = api_only(pool).await;
    for i in 0..5 {
        app.create_function(&format!("fn-{i}"), HELLO, json!({}))
            .await;
    }

    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/functions?limit=2&cursor={c}"),
            None => "/functions?limit=2".to_owned(),
        };
        let page = app.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        names.extend(
            page.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["name"].as_str().unwrap().to_owned()),
        );
        pages += 1;
        match page.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }

    assert_eq!(pages, 3);
    assert_eq!(names, ["fn-4", "fn-3", "fn-2", "fn-1", "fn-0"]);
    app.get("/functions?limit=0")
        .await
        .problem(StatusCode::BAD_REQUEST);
    app.get("/functions?limit=101")
        .await
        .problem(StatusCode::BAD_REQUEST);
    app.get("/functions?cursor=garbage")
        .await
        .problem(StatusCode::BAD_REQUEST);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn executions_page_and_filter_by_status(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app.ready_function("paged", HELLO, json!({})).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let run = app
            .execute(&id, json!({ "name": format!("n{i}") }), 30)
            .await;
        assert_eq!(run.body["status"], "SUCCEEDED");
        ids.push(run.body["id"].as_str().unwrap().to_owned());
    }

    let first = app
        .get(&format!("/functions/{id}/executions?limit=3"))
        .await;
    let cursor = first.body["nextCursor"].as_str().unwrap();
    let second = app
        .get(&format!(
            "/functions/{id}/executions?limit=3&cursor={cursor}"
        ))
        .await;
    let failed = app
        .get(&format!("/functions/{id}/executions?status=FAILED"))
        .await;
    let succeeded = app
        .get(&format!(
            "/functions/{id}/executions?status=SUCCEEDED&limit=100"
        ))
        .await;

    let seen: Vec<&str> = first.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second.body["items"].as_array().unwrap())
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(seen, expected);
    assert_eq!(second.body["nextCursor"], Value::Null);
    assert_eq!(failed.body["items"], json!([]));
    assert_eq!(succeeded.body["items"].as_array().unwrap().len(), 5);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 5);
    app.get(&format!("/functions/{id}/executions?status=DONE"))
        .await
        .problem(StatusCode::BAD_REQUEST);
}
