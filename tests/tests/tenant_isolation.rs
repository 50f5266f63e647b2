//! One user's access must not outlive its grant nor reach past it
//! (docs/security.md): a function's own variable values are for admins;
//! an environment's secrets are write-only and every read of its values is
//! audited; retired versions never run and DEVs run only the active
//! version or ones that are not deprecated (docs/versions-and-discovery.md);
//! executions follow the access rule of their function.

use plat_tests::{client_with_key, Reply, TestApp, Workers, MIGRATOR};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

/// A TypeScript function: READY in milliseconds.
const ECHO_TS: &str = "export default (input: unknown) => ({ echo: input });\n";

/// A handler whose output names its version.
fn answering(v: u32) -> String {
    format!("export default (input: unknown) => ({{ v: {v}, input }});\n")
}

/// A DEV with a key of their own: (user id, client).
async fn dev(app: &TestApp, email: &str) -> (String, reqwest::Client) {
    let id = app.create_user(email, "DEV", None).await;
    let client = client_with_key(&app.create_key(&id).await);
    (id, client)
}

async fn put(app: &TestApp, path: &str, body: Value) -> Reply {
    app.request(Method::PUT, path, Some(body)).await
}

/// Runs `function` as `client` with `?wait=0` (and `&version=`).
async fn queue_as(
    app: &TestApp,
    client: &reqwest::Client,
    function: &str,
    version: Option<&str>,
) -> Reply {
    let query = version.map_or(String::new(), |v| format!("&version={v}"));
    app.request_with(
        client,
        Method::POST,
        &format!("/functions/{function}/execute?wait=0{query}"),
        Some(json!({})),
    )
    .await
}

/// Queues a batch of two runs as `client` (with `?version=`).
async fn batch_as(
    app: &TestApp,
    client: &reqwest::Client,
    function: &str,
    version: Option<&str>,
) -> Reply {
    let query = version.map_or(String::new(), |v| format!("?version={v}"));
    app.request_with(
        client,
        Method::POST,
        &format!("/functions/{function}/executions/batch{query}"),
        Some(json!({ "inputs": [1, 2] })),
    )
    .await
}

// ------------------------------------------------------------ executions

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_dev_cannot_read_list_or_cancel_their_executions_of_a_function_they_lost_access_to(
    pool: PgPool,
) {
    // No executor: the run stays queued, so it could still be cancelled.
    let app = TestApp::spawn_with(pool, Workers::COMPILER_ONLY).await;
    let function = app
        .ready_function_in("typescript", "shared", ECHO_TS, json!({}))
        .await;
    let (_, alice) = dev(&app, "alice@example.com").await;
    let (bob_id, _) = dev(&app, "bob@example.com").await;
    let queued = queue_as(&app, &alice, &function, None).await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{}", queued.body);
    let execution = queued.body["id"].as_str().unwrap().to_owned();

    let restricted = put(
        &app,
        &format!("/functions/{function}"),
        json!({ "allowedUsers": [bob_id] }),
    )
    .await;
    assert_eq!(restricted.status, StatusCode::OK, "{}", restricted.body);

    let read = app
        .request_with(
            &alice,
            Method::GET,
            &format!("/executions/{execution}"),
            None,
        )
        .await;
    read.problem(StatusCode::NOT_FOUND);
    let cancel = app
        .request_with(
            &alice,
            Method::POST,
            &format!("/executions/{execution}/cancel"),
            None,
        )
        .await;
    cancel.problem(StatusCode::NOT_FOUND);
    let listed = app
        .request_with(
            &alice,
            Method::GET,
            &format!("/functions/{function}/executions"),
            None,
        )
        .await;
    listed.problem(StatusCode::NOT_FOUND);
    let as_admin = app.get(&format!("/executions/{execution}")).await;
    assert_eq!(
        as_admin.body["status"], "QUEUED",
        "the refused cancel changed nothing"
    );

    // Given access again (a group now), the history is hers again.
    let group = app
        .request(Method::POST, "/groups", Some(json!({ "name": "team" })))
        .await;
    let group_id = group.body["id"].as_str().unwrap().to_owned();
    let alice_id = app.get("/users").await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "alice@example.com")
        .unwrap()["id"]
        .clone();
    app.request(
        Method::POST,
        &format!("/groups/{group_id}/members"),
        Some(json!({ "userId": alice_id })),
    )
    .await;
    put(
        &app,
        &format!("/functions/{function}"),
        json!({ "allowedGroups": [group_id] }),
    )
    .await;
    let again = app
        .request_with(
            &alice,
            Method::GET,
            &format!("/executions/{execution}"),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    let listed = app
        .request_with(
            &alice,
            Method::GET,
            &format!("/functions/{function}/executions"),
            None,
        )
        .await;
    assert_eq!(listed.body["items"][0]["id"], execution.as_str());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_history_of_a_deleted_function_is_readable_by_admins_only(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::COMPILER_ONLY).await;
    let function = app
        .ready_function_in("typescript", "doomed", ECHO_TS, json!({}))
        .await;
    let (_, alice) = dev(&app, "alice@example.com").await;
    let queued = queue_as(&app, &alice, &function, None).await;
    let execution = queued.body["id"].as_str().unwrap().to_owned();

    let deleted = app
        .request(Method::DELETE, &format!("/functions/{function}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);

    let as_creator = app
        .request_with(
            &alice,
            Method::GET,
            &format!("/executions/{execution}"),
            None,
        )
        .await;
    as_creator.problem(StatusCode::NOT_FOUND);
    let as_admin = app.get(&format!("/executions/{execution}")).await;
    assert_eq!(as_admin.status, StatusCode::OK, "{}", as_admin.body);
    assert_eq!(as_admin.body["status"], "CANCELLED");
}

// ------------------------------------------------------------ versions

/// A function with versions 1.0.0, 2.0.0 and 3.0.0 (the active one).
async fn three_versions(app: &TestApp, name: &str) -> String {
    let created = app
        .request(
            Method::POST,
            "/functions",
            Some(json!({ "name": name, "language": "typescript", "source": answering(1), "version": "1.0.0" })),
        )
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    app.wait_for_build(&id, 1).await;
    for v in [2, 3] {
        let changed = put(
            app,
            &format!("/functions/{id}"),
            json!({ "source": answering(v), "version": format!("{v}.0.0") }),
        )
        .await;
        assert_eq!(changed.status, StatusCode::ACCEPTED, "{}", changed.body);
        app.wait_for_build(&id, i64::from(v)).await;
    }
    id
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn devs_run_only_the_active_version_and_versions_that_are_not_deprecated(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::COMPILER_ONLY).await;
    let function = three_versions(&app, "versioned").await;
    let (_, alice) = dev(&app, "alice@example.com").await;
    let deprecated = app
        .request(
            Method::POST,
            &format!("/functions/{function}/versions/1.0.0/deprecate"),
            Some(json!({ "message": "use 3.x" })),
        )
        .await;
    assert_eq!(deprecated.status, StatusCode::OK, "{}", deprecated.body);

    let old = queue_as(&app, &alice, &function, Some("1.0.0")).await;
    let detail = old.problem(StatusCode::FORBIDDEN);
    assert!(detail.contains("deprecated"), "{detail}");
    batch_as(&app, &alice, &function, Some("1"))
        .await
        .problem(StatusCode::FORBIDDEN);
    let not_deprecated = queue_as(&app, &alice, &function, Some("2.0.0")).await;
    assert_eq!(
        not_deprecated.status,
        StatusCode::ACCEPTED,
        "{}",
        not_deprecated.body
    );
    assert_eq!(not_deprecated.body["functionVersion"], 2);
    let as_admin = queue_as(&app, &app.client, &function, Some("1")).await;
    assert_eq!(as_admin.status, StatusCode::ACCEPTED, "{}", as_admin.body);

    // The active version runs for everyone, deprecated or not.
    app.request(
        Method::POST,
        &format!("/functions/{function}/versions/3/deprecate"),
        Some(json!({ "message": "4.x is coming" })),
    )
    .await;
    let active = queue_as(&app, &alice, &function, None).await;
    assert_eq!(active.status, StatusCode::ACCEPTED, "{}", active.body);
    assert_eq!(active.body["functionVersion"], 3);
    let named = queue_as(&app, &alice, &function, Some("3.0.0")).await;
    assert_eq!(named.status, StatusCode::ACCEPTED, "{}", named.body);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_retired_version_never_runs_again_and_its_queued_runs_end_cancelled(pool: PgPool) {
    // No executor: runs of version 1 stay queued until it is retired.
    let app = TestApp::spawn_with(pool, Workers::COMPILER_ONLY).await;
    let function = three_versions(&app, "retiring").await;
    let (_, alice) = dev(&app, "alice@example.com").await;
    let single = queue_as(&app, &app.client, &function, Some("1")).await;
    assert_eq!(single.status, StatusCode::ACCEPTED, "{}", single.body);
    let batch = batch_as(&app, &alice, &function, Some("1.0.0")).await;
    assert_eq!(batch.status, StatusCode::ACCEPTED, "{}", batch.body);
    let other = queue_as(&app, &alice, &function, Some("2")).await;

    let by_dev = app
        .request_with(
            &alice,
            Method::POST,
            &format!("/functions/{function}/versions/1/retire"),
            None,
        )
        .await;
    by_dev.problem(StatusCode::FORBIDDEN);
    let retired = app
        .request(
            Method::POST,
            &format!("/functions/{function}/versions/1.0.0/retire"),
            None,
        )
        .await;

    assert_eq!(retired.status, StatusCode::OK, "{}", retired.body);
    assert_eq!(retired.body["retired"], true);
    assert!(retired.body["retiredAt"].is_string());
    let mut ended = vec![single.body["id"].as_str().unwrap().to_owned()];
    for id in batch.body["executionIds"].as_array().unwrap() {
        ended.push(id.as_str().unwrap().to_owned());
    }
    for id in &ended {
        let execution = app.get(&format!("/executions/{id}")).await.body;
        assert_eq!(execution["status"], "CANCELLED", "{execution}");
        assert_eq!(execution["error"]["type"], "CANCELLED");
        assert!(
            execution["error"]["message"]
                .as_str()
                .unwrap()
                .contains("retired"),
            "{execution}"
        );
    }
    let untouched = app
        .get(&format!(
            "/executions/{}",
            other.body["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        untouched.body["status"], "QUEUED",
        "other versions' runs stay"
    );

    for refused in [
        queue_as(&app, &app.client, &function, Some("1")).await,
        queue_as(&app, &alice, &function, Some("1.0.0")).await,
        batch_as(&app, &app.client, &function, Some("1")).await,
        app.request(
            Method::POST,
            &format!("/functions/{function}/rollback"),
            Some(json!({ "version": 1 })),
        )
        .await,
    ] {
        let detail = refused.problem(StatusCode::CONFLICT);
        assert!(detail.contains("retired"), "{detail}");
        assert_eq!(refused.body["type"], "urn:plat:problem:version-retired");
    }
    let history = app.get(&format!("/functions/{function}/versions/1")).await;
    assert_eq!(history.status, StatusCode::OK, "it stays readable");
    assert_eq!(history.body["retired"], true);
    let again = app
        .request(
            Method::POST,
            &format!("/functions/{function}/versions/1/retire"),
            None,
        )
        .await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "retiring twice changes nothing"
    );
    app.request(
        Method::POST,
        &format!("/functions/{function}/versions/3/retire"),
        None,
    )
    .await
    .problem(StatusCode::CONFLICT);
    let audit = app.get("/audit?action=function.retire").await.body;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
    assert_eq!(audit["items"][0]["details"]["cancelledExecutions"], 3);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_run_queued_as_its_version_is_retired_ends_cancelled_instead_of_running(pool: PgPool) {
    let mut app = TestApp::spawn_with(pool.clone(), Workers::COMPILER_ONLY).await;
    let function = three_versions(&app, "racing").await;
    let retired = app
        .request(
            Method::POST,
            &format!("/functions/{function}/versions/1/retire"),
            None,
        )
        .await;
    assert_eq!(retired.status, StatusCode::OK, "{}", retired.body);
    // A run that passed the API's check an instant before the retirement
    // committed, and so escaped its cancelling: queued straight away.
    let id = uuid::Uuid::now_v7();
    let mut conn = pool.acquire().await.unwrap();
    plat_common::queue::execute::enqueue(
        &mut conn,
        plat_common::queue::execute::NewExecution {
            id,
            function_id: function.parse().unwrap(),
            version: 1,
            input_json: "{}",
            idempotency_key: None,
            created_by: None,
            request_id: None,
            wake_executors: true,
            max_in_flight: None,
            trigger: &plat_common::Trigger::Api,
            webhook_urls: None,
        },
    )
    .await
    .unwrap();

    app.start_executor(plat_tests::executor_config()).await;
    let execution = app.wait_for_execution(&id.to_string()).await;

    assert_eq!(execution["status"], "CANCELLED", "{execution}");
    assert!(
        execution["error"]["message"]
            .as_str()
            .unwrap()
            .contains("retired"),
        "{execution}"
    );
    assert_eq!(execution["output"], Value::Null, "it never ran");
}

// ------------------------------------------------------------ variables

const TOKEN: &str = "tok-3f9a8b7c6d5e";

#[sqlx::test(migrator = "MIGRATOR")]
async fn devs_see_the_names_of_a_functions_own_variables_but_never_their_values(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let function = app
        .create_function_in(
            "typescript",
            "configured",
            ECHO_TS,
            json!({ "environmentVariables": { "API_TOKEN": TOKEN, "MODE": "fast" } }),
        )
        .await;
    let (_, alice) = dev(&app, "alice@example.com").await;

    for path in [
        format!("/functions/{function}"),
        "/functions".to_owned(),
        "/functions?q=configured".to_owned(),
        format!("/functions/{function}/versions"),
        format!("/functions/{function}/versions/1"),
    ] {
        let reply = app.request_with(&alice, Method::GET, &path, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
        let text = reply.body.to_string();
        assert!(!text.contains(TOKEN), "{path}: {text}");
        assert!(!text.contains("fast"), "{path}: {text}");
        let config = [
            &reply.body["executionConfig"],
            &reply.body["items"][0]["executionConfig"],
        ]
        .into_iter()
        .find(|c| c.is_object())
        .unwrap_or_else(|| panic!("{path}: {text}"));
        assert_eq!(
            config["environmentVariables"],
            json!({ "API_TOKEN": "***", "MODE": "***" }),
            "{path}"
        );
    }
    let as_admin = app.get(&format!("/functions/{function}")).await;
    assert_eq!(
        as_admin.body["executionConfig"]["environmentVariables"]["API_TOKEN"],
        TOKEN
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_secret_variables_value_is_never_returned_and_every_read_of_values_is_audited(
    pool: PgPool,
) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let (reader_id, reader) = dev(&app, "reader@example.com").await;
    let created = app
        .request(
            Method::POST,
            "/environments",
            Some(json!({
                "name": "production",
                "variables": {
                    "REGION": "eu",
                    "TOKEN": { "value": TOKEN, "secret": true },
                    "LATER": { "secret": true },
                },
                "allowedUsers": [reader_id],
            })),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let environment = created.body["id"].as_str().unwrap().to_owned();
    let path = format!("/environments/{environment}");
    let expected_secrets = json!([
        { "name": "LATER", "set": false },
        { "name": "TOKEN", "set": true },
    ]);
    assert_eq!(created.body["variables"], json!({ "REGION": "eu" }));
    assert_eq!(created.body["secrets"], expected_secrets);
    assert_eq!(
        created.body["variableNames"],
        json!(["LATER", "REGION", "TOKEN"])
    );

    // An update that sends the secret without a value keeps the value.
    let kept = put(
        &app,
        &path,
        json!({ "variables": { "REGION": "us", "TOKEN": { "secret": true }, "LATER": { "secret": true } } }),
    )
    .await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.body);
    assert_eq!(kept.body["secrets"], expected_secrets);
    let stored: (Vec<u8>,) = sqlx::query_as("select variables from environments")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let key: plat_common::secrets::SecretsKey = plat_tests::SECRETS_KEY.parse().unwrap();
    let values = key.open(environment.parse().unwrap(), &stored.0).unwrap();
    assert_eq!(values.get("TOKEN").map(String::as_str), Some(TOKEN), "kept");
    assert_eq!(values.get("LATER"), None, "still unset");

    let as_admin = app.get(&path).await;
    let as_reader = app.request_with(&reader, Method::GET, &path, None).await;
    let admin_list = app.get("/environments").await;
    for reply in [&created, &kept, &as_admin, &as_reader, &admin_list] {
        assert!(reply.status.is_success(), "{}", reply.body);
        assert!(!reply.body.to_string().contains(TOKEN), "{}", reply.body);
    }
    assert_eq!(as_reader.body["variables"], json!({ "REGION": "us" }));
    assert_eq!(as_reader.body["secrets"], expected_secrets);

    let reads = app
        .get(&format!(
            "/audit?action=environment.read&targetId={environment}"
        ))
        .await
        .body;
    let readers: Vec<&str> = reads["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["actorEmail"].as_str().unwrap())
        .collect();
    assert_eq!(
        readers,
        ["reader@example.com", "admin@localhost"],
        "{reads}"
    );
    assert_eq!(
        reads["items"][0]["details"]["variableNames"],
        json!(["REGION"])
    );
    let audit = app.get("/audit").await.body.to_string();
    assert!(!audit.contains(TOKEN), "{audit}");
}

/// Reads `process`-visible variables from a Rust function: the region, the
/// length of the secret token (so the secret never lands in the history),
/// and whether the unset secret is there.
const ENV_READER: &str = r#"
use serde_json::{json, Value};
pub fn handler(_input: Value) -> Result<Value, String> {
    Ok(json!({
        "region": std::env::var("REGION").ok(),
        "tokenLength": std::env::var("TOKEN").map(|t| t.len()).unwrap_or(0),
        "later": std::env::var("LATER").ok(),
    }))
}
"#;

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_secret_variable_reaches_runs_and_keeps_its_value_through_an_update(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let created = app
        .request(
            Method::POST,
            "/environments",
            Some(json!({
                "name": "production",
                "variables": {
                    "REGION": "eu",
                    "TOKEN": { "value": TOKEN, "secret": true },
                    "LATER": { "secret": true },
                },
            })),
        )
        .await;
    let environment = created.body["id"].as_str().unwrap().to_owned();
    let function = app
        .create_function("env-reader", ENV_READER, json!({}))
        .await;
    put(
        &app,
        &format!("/functions/{function}"),
        json!({ "environmentId": environment }),
    )
    .await;
    assert_eq!(app.wait_for_build(&function, 1).await["status"], "READY");

    let run = app.execute(&function, json!(null), 30).await;
    assert_eq!(
        run.body["output"],
        json!({ "region": "eu", "tokenLength": TOKEN.len(), "later": null }),
        "{}",
        run.body
    );

    put(
        &app,
        &format!("/environments/{environment}"),
        json!({ "variables": { "REGION": "us", "TOKEN": { "secret": true } } }),
    )
    .await;
    let rerun = app.execute(&function, json!(null), 30).await;
    assert_eq!(
        rerun.body["output"],
        json!({ "region": "us", "tokenLength": TOKEN.len(), "later": null }),
        "{}",
        rerun.body
    );
}
