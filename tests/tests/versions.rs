//! Versions (docs/versions-and-discovery.md): semantic versions that only
//! grow, the version list, rollback without a rebuild, running a chosen
//! version, and deprecation headers on runs of a deprecated version.
//! TypeScript functions keep the builds to milliseconds.

use plat_tests::{client_with_key, Reply, TestApp, Workers, MIGRATOR};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

/// A handler whose output names its version.
fn answering(v: u32) -> String {
    format!("export default (input: unknown) => ({{ v: {v}, input }});\n")
}

const BROKEN: &str = "export default (";

async fn create(app: &TestApp, name: &str, source: &str, version: Option<&str>) -> Reply {
    let mut body = json!({ "name": name, "language": "typescript", "source": source });
    if let Some(version) = version {
        body["version"] = json!(version);
    }
    app.request(Method::POST, "/functions", Some(body)).await
}

/// Creates the function and waits for its first build; returns its id.
async fn create_built(app: &TestApp, name: &str, source: &str, version: Option<&str>) -> String {
    let reply = create(app, name, source, version).await;
    let id = reply.body["id"]
        .as_str()
        .expect("the new function's id")
        .to_owned();
    app.wait_for_build(&id, 1).await;
    id
}

async fn put(app: &TestApp, function: &str, body: Value) -> Reply {
    app.request(Method::PUT, &format!("/functions/{function}"), Some(body))
        .await
}

async fn rollback(app: &TestApp, function: &str, version: Value) -> Reply {
    app.request(
        Method::POST,
        &format!("/functions/{function}/rollback"),
        Some(json!({ "version": version })),
    )
    .await
}

/// Runs `function` (optionally `?version=`) and waits for the result.
async fn run(app: &TestApp, function: &str, version: Option<&str>) -> Reply {
    let query = version.map_or(String::new(), |v| format!("&version={v}"));
    app.request(
        Method::POST,
        &format!("/functions/{function}/execute?wait=30{query}"),
        Some(json!({})),
    )
    .await
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).map(|v| v.to_str().unwrap())
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn semantic_versions_only_grow_and_default_to_the_next_patch(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;

    let first = create(&app, "semver", &answering(1), Some("1.0.0")).await;
    let defaulted = create(&app, "defaulted", &answering(1), None).await;
    let garbage = create(&app, "garbage", &answering(1), Some("1.0")).await;

    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert_eq!(first.body["semver"], "1.0.0");
    assert_eq!(first.body["activeSemver"], Value::Null);
    assert_eq!(defaulted.body["semver"], "0.1.0");
    assert!(garbage
        .problem(StatusCode::BAD_REQUEST)
        .contains("semantic version"));

    // Equal or lower: 409, naming the newest version. Garbage: 400.
    for lower in ["1.0.0", "0.9.9", "1.0.0-rc.1", "1.0.0+build.7"] {
        let refused = put(&app, "semver", json!({ "version": lower })).await;
        let detail = refused.problem(StatusCode::CONFLICT);
        assert!(detail.contains("1.0.0"), "{detail}");
    }
    put(&app, "semver", json!({ "version": "two" }))
        .await
        .problem(StatusCode::BAD_REQUEST);

    // A new source without a version: the next patch.
    let patched = put(&app, "semver", json!({ "source": answering(2) })).await;
    assert_eq!(patched.status, StatusCode::ACCEPTED, "{}", patched.body);
    assert_eq!(patched.body["version"], 2);
    assert_eq!(patched.body["semver"], "1.0.1");

    // A version alone makes a new version of the same source, and builds it.
    let jobs_before = app.count("compile_jobs").await;
    let major = put(&app, "semver", json!({ "version": "2.0.0" })).await;
    assert_eq!(major.status, StatusCode::ACCEPTED, "{}", major.body);
    assert_eq!(major.body["version"], 3);
    assert_eq!(major.body["semver"], "2.0.0");
    assert_eq!(app.count("compile_jobs").await, jobs_before + 1);
    let v3 = app.get("/functions/semver/versions/3").await;
    assert_eq!(v3.body["source"], answering(2));

    // Metadata alone changes the function in place.
    let described = put(&app, "semver", json!({ "description": "answers" })).await;
    assert_eq!(described.status, StatusCode::OK, "{}", described.body);
    assert_eq!(described.body["version"], 3);
    assert_eq!(described.body["semver"], "2.0.0");

    // A pre-release of the next minor, then its release by default.
    let rc = put(&app, "semver", json!({ "version": "2.1.0-rc.1" })).await;
    assert_eq!(rc.body["semver"], "2.1.0-rc.1");
    let released = put(&app, "semver", json!({ "source": answering(3) })).await;
    assert_eq!(released.body["semver"], "2.1.0");
    assert_eq!(released.body["version"], 5);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn versions_are_listed_newest_first_and_read_by_number_or_semver(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::COMPILER_ONLY).await;
    let id = create_built(&app, "listed", &answering(1), Some("1.0.0")).await;
    put(
        &app,
        "listed",
        json!({ "source": answering(2), "version": "2.0.0" }),
    )
    .await;
    app.wait_for_build(&id, 2).await;

    let list = app.get("/functions/listed/versions").await;

    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert_eq!(list.body["activeVersion"], 2);
    let items = list.body["items"].as_array().unwrap();
    let numbers: Vec<&Value> = items.iter().map(|v| &v["version"]).collect();
    assert_eq!(numbers, [&json!(2), &json!(1)]);
    assert_eq!(items[0]["semver"], "2.0.0");
    assert_eq!(items[0]["active"], true);
    assert_eq!(items[1]["active"], false);
    for item in items {
        assert_eq!(item["status"], "READY", "{item}");
        assert!(item["moduleSha256"].is_string(), "{item}");
        assert!(item["compiledAt"].is_string(), "{item}");
        assert_eq!(item["deprecated"], false);
        assert_eq!(item["deprecatedAt"], Value::Null);
        assert!(
            item.get("source").is_none(),
            "no source in the list: {item}"
        );
        assert!(item["executionConfig"]["timeoutMs"].is_number(), "{item}");
    }

    let by_number = app.get(&format!("/functions/{id}/versions/1")).await;
    let by_semver = app.get("/functions/listed/versions/1.0.0").await;
    assert_eq!(by_number.status, StatusCode::OK, "{}", by_number.body);
    assert_eq!(by_number.body, by_semver.body);
    assert_eq!(by_number.body["source"], answering(1));
    assert_eq!(by_number.body["semver"], "1.0.0");

    for missing in ["9", "3.0.0", "latest"] {
        let reply = app
            .get(&format!("/functions/listed/versions/{missing}"))
            .await;
        let detail = reply.problem(StatusCode::NOT_FOUND);
        assert_eq!(detail, format!("function listed has no version {missing}"));
    }
    app.get("/functions/nope/versions")
        .await
        .problem(StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn rolling_back_brings_the_old_output_back_without_a_build(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = create_built(&app, "greeter", &answering(1), Some("1.0.0")).await;
    put(
        &app,
        "greeter",
        json!({ "source": answering(2), "version": "2.0.0" }),
    )
    .await;
    let function = app.wait_for_build(&id, 2).await;
    assert_eq!(function["activeVersion"], 2);
    assert_eq!(run(&app, "greeter", None).await.body["output"]["v"], 2);
    let versions_before = app.count("function_versions").await;
    let compiled_before = app.get("/functions/greeter/versions/1").await.body["compiledAt"].clone();

    let rolled = rollback(&app, "greeter", json!("1.0.0")).await;

    assert_eq!(rolled.status, StatusCode::OK, "{}", rolled.body);
    assert_eq!(rolled.body["activeVersion"], 1);
    assert_eq!(rolled.body["activeSemver"], "1.0.0");
    assert_eq!(rolled.body["version"], 2, "the newest version stays");
    assert_eq!(rolled.body["semver"], "2.0.0");
    let after = run(&app, "greeter", None).await;
    assert_eq!(after.body["output"]["v"], 1, "{}", after.body);
    assert_eq!(after.body["functionVersion"], 1);
    // Nothing was built: no version, no job, the same build.
    assert_eq!(app.count("function_versions").await, versions_before);
    assert_eq!(app.count("compile_jobs").await, 0);
    let v1 = app.get("/functions/greeter/versions/1").await.body;
    assert_eq!(v1["compiledAt"], compiled_before);
    assert_eq!(v1["active"], true);

    // Forward again, by number; both moves are in the audit log.
    let forward = rollback(&app, &id, json!(2)).await;
    assert_eq!(forward.body["activeVersion"], 2);
    assert_eq!(run(&app, "greeter", None).await.body["output"]["v"], 2);
    let audit = app.get("/audit?action=function.rollback").await.body;
    let entries = audit["items"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{audit}");
    assert_eq!(
        entries[1]["details"]["from"],
        json!({ "version": 2, "semver": "2.0.0" })
    );
    assert_eq!(
        entries[1]["details"]["to"],
        json!({ "version": 1, "semver": "1.0.0" })
    );
    assert_eq!(entries[0]["targetId"], id.as_str());

    rollback(&app, "greeter", json!("7.0.0"))
        .await
        .problem(StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn only_a_ready_version_can_be_made_active_or_chosen_to_run(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = create_built(&app, "flaky", &answering(1), Some("1.0.0")).await;
    put(&app, "flaky", json!({ "source": BROKEN })).await;
    let function = app.wait_for_build(&id, 2).await;
    assert_eq!(function["status"], "FAILED");

    let to_failed = rollback(&app, "flaky", json!(2)).await;
    let run_failed = run(&app, "flaky", Some("1.0.1")).await;
    let run_missing = run(&app, "flaky", Some("4")).await;
    let run_old = run(&app, "flaky", Some("1")).await;

    assert!(to_failed.problem(StatusCode::CONFLICT).contains("FAILED"));
    assert!(run_failed.problem(StatusCode::CONFLICT).contains("FAILED"));
    assert_eq!(
        run_missing.problem(StatusCode::NOT_FOUND),
        "function flaky has no version 4"
    );
    assert_eq!(run_old.status, StatusCode::OK, "{}", run_old.body);
    assert_eq!(run_old.body["output"]["v"], 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_pending_version_cannot_be_made_active(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    create(&app, "waiting", &answering(1), None).await;

    let refused = rollback(&app, "waiting", json!("0.1.0")).await;
    let run_pending = run(&app, "waiting", Some("1")).await;

    assert!(refused.problem(StatusCode::CONFLICT).contains("PENDING"));
    assert!(run_pending
        .problem(StatusCode::CONFLICT)
        .contains("PENDING"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn devs_read_versions_but_cannot_roll_back_or_deprecate(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let dev = app.create_user("dev@example.com", "DEV", None).await;
    let other = app.create_user("other@example.com", "DEV", None).await;
    let dev_client = client_with_key(&app.create_key(&dev).await);
    create(&app, "shared", &answering(1), None).await;
    create(&app, "private", &answering(1), None).await;
    put(&app, "private", json!({ "allowedUsers": [other] })).await;

    let list = app
        .request_with(&dev_client, Method::GET, "/functions/shared/versions", None)
        .await;
    let roll = app
        .request_with(
            &dev_client,
            Method::POST,
            "/functions/shared/rollback",
            Some(json!({ "version": 1 })),
        )
        .await;
    let deprecate = app
        .request_with(
            &dev_client,
            Method::POST,
            "/functions/shared/versions/1/deprecate",
            Some(json!({ "message": "no" })),
        )
        .await;
    let undeprecate = app
        .request_with(
            &dev_client,
            Method::DELETE,
            "/functions/shared/versions/1/deprecation",
            None,
        )
        .await;
    let hidden = app
        .request_with(
            &dev_client,
            Method::GET,
            "/functions/private/versions/1",
            None,
        )
        .await;

    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    roll.problem(StatusCode::FORBIDDEN);
    deprecate.problem(StatusCode::FORBIDDEN);
    undeprecate.problem(StatusCode::FORBIDDEN);
    hidden.problem(StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_deprecated_version_still_runs_and_every_answer_says_so(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = create_built(&app, "legacy", &answering(1), Some("1.0.0")).await;

    let deprecated = app
        .request(
            Method::POST,
            "/functions/legacy/versions/1.0.0/deprecate",
            Some(json!({ "message": "  use 2.x — 100% better  " })),
        )
        .await;

    assert_eq!(deprecated.status, StatusCode::OK, "{}", deprecated.body);
    assert_eq!(deprecated.body["deprecated"], true);
    assert_eq!(
        deprecated.body["deprecationMessage"],
        "use 2.x — 100% better"
    );
    let at: chrono::DateTime<chrono::Utc> = deprecated.body["deprecatedAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let expected_deprecation = format!("@{}", at.timestamp());
    let expected_message = "use 2.x %E2%80%94 100%25 better";

    let sync = run(&app, "legacy", None).await;
    let queued = app
        .request(
            Method::POST,
            "/functions/legacy/execute?wait=0",
            Some(json!({})),
        )
        .await;
    let batch = app
        .request(
            Method::POST,
            "/functions/legacy/executions/batch",
            Some(json!({ "inputs": [1, 2] })),
        )
        .await;
    // `wait=0` answers the state it reads at once: usually QUEUED (202), but
    // a fast executor may already have finished the run (200).
    for (reply, statuses) in [
        (&sync, &[StatusCode::OK][..]),
        (&queued, &[StatusCode::ACCEPTED, StatusCode::OK][..]),
        (&batch, &[StatusCode::ACCEPTED][..]),
    ] {
        assert!(
            statuses.contains(&reply.status),
            "{} {}",
            reply.status,
            reply.body
        );
        assert_eq!(
            header(reply, "deprecation"),
            Some(expected_deprecation.as_str())
        );
        assert_eq!(
            header(reply, "plat-deprecation-message"),
            Some(expected_message)
        );
    }
    assert_eq!(sync.body["status"], "SUCCEEDED");
    assert_eq!(sync.body["output"]["v"], 1);

    // A newer version takes over: no headers, unless the old one is chosen.
    put(
        &app,
        "legacy",
        json!({ "source": answering(2), "version": "2.0.0" }),
    )
    .await;
    app.wait_for_build(&id, 2).await;
    let current = run(&app, "legacy", None).await;
    let chosen = run(&app, "legacy", Some("1.0.0")).await;
    assert_eq!(current.body["output"]["v"], 2);
    assert_eq!(header(&current, "deprecation"), None);
    assert_eq!(chosen.body["output"]["v"], 1);
    assert_eq!(chosen.body["functionVersion"], 1);
    assert_eq!(
        header(&chosen, "deprecation"),
        Some(expected_deprecation.as_str())
    );

    // Lifted: no headers any more.
    let lifted = app
        .request(
            Method::DELETE,
            &format!("/functions/{id}/versions/1/deprecation"),
            None,
        )
        .await;
    assert_eq!(lifted.status, StatusCode::OK, "{}", lifted.body);
    assert_eq!(lifted.body["deprecated"], false);
    assert_eq!(lifted.body["deprecationMessage"], Value::Null);
    let after = run(&app, "legacy", Some("1")).await;
    assert_eq!(after.body["output"]["v"], 1);
    assert_eq!(header(&after, "deprecation"), None);
    assert_eq!(header(&after, "plat-deprecation-message"), None);

    for action in ["function.deprecate", "function.undeprecate"] {
        let audit = app.get(&format!("/audit?action={action}")).await.body;
        let entry = &audit["items"][0];
        assert_eq!(entry["targetId"], id.as_str(), "{audit}");
        assert_eq!(entry["details"]["semver"], "1.0.0", "{audit}");
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_deprecation_needs_a_message_of_sensible_length(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    create(&app, "strict", &answering(1), None).await;
    let path = "/functions/strict/versions/1/deprecate";

    for body in [
        json!({}),
        json!({ "message": "   " }),
        json!({ "message": "x".repeat(501) }),
        json!({ "message": "x", "extra": true }),
    ] {
        app.request(Method::POST, path, Some(body))
            .await
            .problem(StatusCode::BAD_REQUEST);
    }
    let longest = app
        .request(
            Method::POST,
            path,
            Some(json!({ "message": "x".repeat(500) })),
        )
        .await;
    assert_eq!(longest.status, StatusCode::OK, "{}", longest.body);
    app.request(
        Method::POST,
        "/functions/strict/versions/2/deprecate",
        Some(json!({ "message": "x" })),
    )
    .await
    .problem(StatusCode::NOT_FOUND);
}
