//! Who may do what (docs/security.md): the access matrix over callers,
//! actions and functions; sessions and CSRF; environments reaching runs and
//! their secrets reaching nobody else; the audit log; rate limits; and no
//! password, key or secret stored or logged in clear.

use plat_tests::{client_with_key, Reply, TestApp, Workers, ADMIN_KEY, MIGRATOR};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

const PASSWORD: &str = "correct horse battery staple";

/// A TypeScript function: READY in milliseconds.
const ECHO_TS: &str = "export default (input: unknown) => ({ echo: input });\n";

/// A browser: the session cookie and the CSRF token from its login.
struct Browser {
    client: reqwest::Client,
    cookie: String,
    csrf: String,
}

impl Browser {
    async fn login(app: &TestApp, email: &str, password: &str) -> (Reply, Option<Browser>) {
        let client = reqwest::Client::new();
        let response = client
            .post(format!("{}/auth/login", app.base_url))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .expect("login sent");
        let reply = plat_tests::read(response).await;
        let browser = reply.headers.get("set-cookie").map(|set_cookie| Browser {
            client,
            cookie: set_cookie
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned(),
            csrf: reply.body["csrfToken"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        });
        (reply, browser)
    }

    /// Sends with the cookie, and the CSRF header when `csrf`.
    async fn send(
        &self,
        app: &TestApp,
        method: Method,
        path: &str,
        body: Option<Value>,
        csrf: bool,
    ) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{path}", app.base_url))
            .header("cookie", &self.cookie);
        if csrf {
            request = request.header("x-csrf-token", &self.csrf);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        plat_tests::read(request.send().await.expect("request sent")).await
    }
}

/// How a caller reaches the API in the matrix.
enum Credential {
    Key(reqwest::Client),
    Session(Browser),
}

impl Credential {
    async fn send(&self, app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Reply {
        match self {
            Credential::Key(client) => app.request_with(client, method, path, body).await,
            Credential::Session(browser) => browser.send(app, method, path, body, true).await,
        }
    }
}

const LISTED: u16 = 1;
const HIDDEN: u16 = 0;

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_access_matrix_holds_for_every_caller_action_and_function(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let group = app
        .request(Method::POST, "/groups", Some(json!({ "name": "team" })))
        .await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.body);
    let group_id = group.body["id"].as_str().unwrap().to_owned();
    let in_group = app.create_user("in-group@example.com", "DEV", None).await;
    let member = app
        .request(
            Method::POST,
            &format!("/groups/{group_id}/members"),
            Some(json!({ "userId": in_group })),
        )
        .await;
    assert_eq!(member.status, StatusCode::CREATED, "{}", member.body);
    let named = app.create_user("named@example.com", "DEV", None).await;
    let outsider = app
        .create_user("outsider@example.com", "DEV", Some(PASSWORD))
        .await;

    let public = app
        .ready_function_in("typescript", "public", ECHO_TS, json!({}))
        .await;
    let by_group = app
        .ready_function_in("typescript", "by-group", ECHO_TS, json!({}))
        .await;
    let by_user = app
        .ready_function_in("typescript", "by-user", ECHO_TS, json!({}))
        .await;
    for (id, permissions) in [
        (&by_group, json!({ "allowedGroups": [group_id] })),
        (&by_user, json!({ "allowedUsers": [named] })),
    ] {
        let set = app
            .request(Method::PUT, &format!("/functions/{id}"), Some(permissions))
            .await;
        assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    }

    let revoked_key = app.create_key(&named).await;
    let revoked_id = app
        .request_with(&client_with_key(&revoked_key), Method::GET, "/me", None)
        .await;
    assert_eq!(
        revoked_id.status,
        StatusCode::OK,
        "the key works before it is revoked"
    );
    let keys = app.get(&format!("/api-keys?userId={named}")).await;
    let key_id = keys.body["items"][0]["id"].as_str().unwrap().to_owned();
    let revoke = app
        .request(Method::DELETE, &format!("/api-keys/{key_id}"), None)
        .await;
    assert_eq!(revoke.status, StatusCode::NO_CONTENT);

    let (_, expired) = Browser::login(&app, "outsider@example.com", PASSWORD).await;
    let expired = expired.expect("the login set a cookie");
    sqlx::query("update sessions set expires_at = now() - interval '1 second'")
        .execute(&pool)
        .await
        .unwrap();

    let callers: Vec<(&str, Credential)> = vec![
        ("no credentials", Credential::Key(reqwest::Client::new())),
        (
            "revoked key",
            Credential::Key(client_with_key(&revoked_key)),
        ),
        ("expired session", Credential::Session(expired)),
        (
            "dev outsider",
            Credential::Key(client_with_key(&app.create_key(&outsider).await)),
        ),
        (
            "dev named",
            Credential::Key(client_with_key(&app.create_key(&named).await)),
        ),
        (
            "dev in group",
            Credential::Key(client_with_key(&app.create_key(&in_group).await)),
        ),
        // Last: its deletes succeed.
        ("admin", Credential::Key(client_with_key(ADMIN_KEY))),
    ];
    // [list, read, execute, update, delete] for [public, group-restricted,
    // user-restricted]; list is LISTED or HIDDEN when it answers 200.
    let denied = [401; 5];
    let can_use = [LISTED, 200, 200, 403, 403];
    let cannot_see = [HIDDEN, 404, 404, 404, 404];
    let expected: [(&str, [[u16; 5]; 3]); 7] = [
        ("no credentials", [denied; 3]),
        ("revoked key", [denied; 3]),
        ("expired session", [denied; 3]),
        ("dev outsider", [can_use, cannot_see, cannot_see]),
        ("dev named", [can_use, cannot_see, can_use]),
        ("dev in group", [can_use, can_use, cannot_see]),
        ("admin", [[LISTED, 200, 200, 200, 204]; 3]),
    ];
    let functions = [
        ("public", &public),
        ("group-restricted", &by_group),
        ("user-restricted", &by_user),
    ];

    let mut mismatches = Vec::new();
    for ((caller, credential), (expected_caller, rows)) in callers.iter().zip(expected) {
        assert_eq!(*caller, expected_caller);
        for ((function, id), expected) in functions.iter().zip(rows) {
            let list = credential
                .send(&app, Method::GET, "/functions?limit=100", None)
                .await;
            let listed = list.body["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|f| f["id"] == **id));
            let list_outcome = match list.status {
                StatusCode::OK => u16::from(listed),
                other => other.as_u16(),
            };
            let read = credential
                .send(&app, Method::GET, &format!("/functions/{id}"), None)
                .await;
            let execute = credential
                .send(
                    &app,
                    Method::POST,
                    &format!("/functions/{id}/execute?wait=30"),
                    Some(json!({ "n": 1 })),
                )
                .await;
            let update = credential
                .send(
                    &app,
                    Method::PUT,
                    &format!("/functions/{id}"),
                    Some(json!({ "description": caller })),
                )
                .await;
            let delete = credential
                .send(&app, Method::DELETE, &format!("/functions/{id}"), None)
                .await;
            let got = [
                list_outcome,
                read.status.as_u16(),
                execute.status.as_u16(),
                update.status.as_u16(),
                delete.status.as_u16(),
            ];
            if got != expected {
                mismatches.push(format!(
                    "{caller} × {function}: expected {expected:?}, got {got:?}"
                ));
            }
            for reply in [&read, &execute, &update, &delete] {
                if reply.status.is_client_error() {
                    reply.problem(reply.status);
                }
            }
            if execute.status == StatusCode::OK {
                assert_eq!(execute.body["output"], json!({ "echo": { "n": 1 } }));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_browser_session_needs_its_csrf_token_to_change_anything_and_ends_at_logout(
    pool: PgPool,
) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    app.create_user("dev@example.com", "DEV", Some(PASSWORD))
        .await;

    let (wrong, no_session) = Browser::login(&app, "dev@example.com", "not the password").await;
    let (unknown, _) = Browser::login(&app, "nobody@example.com", PASSWORD).await;
    let (ok, browser) = Browser::login(&app, "DEV@example.com", PASSWORD).await;

    assert!(no_session.is_none());
    let wrong_detail = wrong.problem(StatusCode::UNAUTHORIZED).to_owned();
    assert_eq!(
        unknown.problem(StatusCode::UNAUTHORIZED),
        wrong_detail,
        "no hint which emails exist"
    );
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let set_cookie = ok.headers["set-cookie"].to_str().unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let browser = browser.unwrap();

    let me = browser.send(&app, Method::GET, "/me", None, false).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["email"], "dev@example.com");
    assert_eq!(me.body["role"], "DEV");
    assert_eq!(me.body["authenticatedBy"], "session");
    assert_eq!(me.body["csrfToken"], browser.csrf.as_str());

    let new_key = json!({ "name": "laptop" });
    let without = browser
        .send(
            &app,
            Method::POST,
            "/api-keys",
            Some(new_key.clone()),
            false,
        )
        .await;
    without.problem(StatusCode::FORBIDDEN);
    let with = browser
        .send(&app, Method::POST, "/api-keys", Some(new_key), true)
        .await;
    assert_eq!(with.status, StatusCode::CREATED, "{}", with.body);
    let key = with.body["key"].as_str().unwrap();
    assert!(key.starts_with(with.body["prefix"].as_str().unwrap()));
    let create_function = browser
        .send(
            &app,
            Method::POST,
            "/functions",
            Some(json!({ "name": "f", "language": "typescript", "source": ECHO_TS })),
            true,
        )
        .await;
    create_function.problem(StatusCode::FORBIDDEN);

    let logout = browser
        .send(&app, Method::POST, "/auth/logout", None, true)
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    let after = browser.send(&app, Method::GET, "/me", None, false).await;
    after.problem(StatusCode::UNAUTHORIZED);
    let key_still_works = app
        .request_with(&client_with_key(key), Method::GET, "/me", None)
        .await;
    assert_eq!(
        key_still_works.status,
        StatusCode::OK,
        "logout ends the session only"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn only_health_and_login_answer_without_credentials(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let anonymous = reqwest::Client::new();

    for path in ["/healthz", "/readyz"] {
        let reply = app.request_with(&anonymous, Method::GET, path, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
    }
    for (method, path) in [
        (Method::GET, "/functions"),
        (
            Method::GET,
            "/executions/0190f2a4-0000-7000-8000-000000000000",
        ),
        (Method::GET, "/users"),
        (Method::GET, "/audit"),
        (Method::GET, "/environments"),
        (Method::GET, "/no-such-route"),
    ] {
        let reply = app.request_with(&anonymous, method, path, None).await;
        reply.problem(StatusCode::UNAUTHORIZED);
        assert!(reply.headers.contains_key("www-authenticate"), "{path}");
    }
    let malformed = app
        .request_with(&client_with_key(""), Method::GET, "/functions", None)
        .await;
    malformed.problem(StatusCode::UNAUTHORIZED);
}

/// Reads `process`-visible variables from a Rust function: the greeting, and
/// only the length of the secret token (so the secret never lands in the
/// execution history).
const ENV_READER: &str = r#"
use serde_json::{json, Value};
pub fn handler(_input: Value) -> Result<Value, String> {
    Ok(json!({
        "greeting": std::env::var("GREETING").ok(),
        "region": std::env::var("REGION").ok(),
        "tokenLength": std::env::var("TOKEN").map(|t| t.len()).unwrap_or(0),
    }))
}
"#;

const SECRET: &str = "s3cr3t-token-value-42";

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_environment_reaches_runs_and_its_secrets_reach_nobody_else(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let reader = app.create_user("reader@example.com", "DEV", None).await;
    let outsider = app.create_user("outsider@example.com", "DEV", None).await;
    let reader = client_with_key(&app.create_key(&reader).await);
    let outsider = client_with_key(&app.create_key(&outsider).await);
    let reader_id = app.get("/users").await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "reader@example.com")
        .unwrap()["id"]
        .clone();

    let created = app
        .request(
            Method::POST,
            "/environments",
            Some(json!({
                "name": "production",
                "variables": { "GREETING": "from the environment", "REGION": "eu", "TOKEN": SECRET },
                "allowedUsers": [reader_id],
            })),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let environment = created.body["id"].as_str().unwrap().to_owned();
    let function = app
        .create_function(
            "env-reader",
            ENV_READER,
            json!({ "environmentVariables": { "GREETING": "the function's own" } }),
        )
        .await;
    let attach = app
        .request(
            Method::PUT,
            &format!("/functions/{function}"),
            Some(json!({ "environmentId": environment })),
        )
        .await;
    assert_eq!(attach.status, StatusCode::OK, "{}", attach.body);
    assert_eq!(app.wait_for_build(&function, 1).await["status"], "READY");

    let run = app.execute(&function, json!(null), 30).await;
    assert_eq!(run.body["status"], "SUCCEEDED", "{}", run.body);
    assert_eq!(
        run.body["output"],
        json!({ "greeting": "the function's own", "region": "eu", "tokenLength": SECRET.len() })
    );

    let changed = app
        .request(
            Method::PUT,
            &format!("/environments/{environment}"),
            Some(json!({ "variables": { "REGION": "us", "TOKEN": SECRET } })),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(changed.body["revision"], 2);
    let rerun = app.execute(&function, json!(null), 30).await;
    assert_eq!(
        rerun.body["output"],
        json!({ "greeting": "the function's own", "region": "us", "tokenLength": SECRET.len() }),
        "the next run sees the new values"
    );

    let as_reader = app
        .request_with(
            &reader,
            Method::GET,
            &format!("/environments/{environment}"),
            None,
        )
        .await;
    assert_eq!(as_reader.status, StatusCode::OK, "{}", as_reader.body);
    assert_eq!(as_reader.body["variables"]["TOKEN"], SECRET);
    let as_outsider = app
        .request_with(
            &outsider,
            Method::GET,
            &format!("/environments/{environment}"),
            None,
        )
        .await;
    as_outsider.problem(StatusCode::NOT_FOUND);
    assert!(!as_outsider.body.to_string().contains(SECRET));
    let outsider_list = app
        .request_with(&outsider, Method::GET, "/environments", None)
        .await;
    assert_eq!(outsider_list.body["items"], json!([]));
    let reader_list = app
        .request_with(&reader, Method::GET, "/environments", None)
        .await;
    assert_eq!(
        reader_list.body["items"][0]["variableNames"],
        json!(["REGION", "TOKEN"])
    );
    assert_eq!(
        reader_list.body["items"][0].get("variables"),
        None,
        "listings show names only"
    );
    let reader_edit = app
        .request_with(
            &reader,
            Method::PUT,
            &format!("/environments/{environment}"),
            Some(json!({ "variables": {} })),
        )
        .await;
    reader_edit.problem(StatusCode::FORBIDDEN);

    let in_use = app
        .request(
            Method::DELETE,
            &format!("/environments/{environment}"),
            None,
        )
        .await;
    in_use.problem(StatusCode::CONFLICT);

    assert_eq!(
        tables_containing(&pool, SECRET).await,
        Vec::<String>::new(),
        "the secret is stored encrypted only"
    );
}

/// The tables with a row whose text (or, for binary columns, hex) form
/// contains `needle`.
async fn tables_containing(pool: &PgPool, needle: &str) -> Vec<String> {
    let tables: Vec<(String,)> = sqlx::query_as(
        "select tablename::text from pg_tables where schemaname = 'public' order by 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let hex: String = needle.bytes().map(|b| format!("{b:02x}")).collect();
    let mut found = Vec::new();
    for (table,) in tables {
        let (hits,): (i64,) = sqlx::query_as(&format!(
            "select count(*) from {table} t where strpos(t::text, $1) > 0 or strpos(t::text, $2) > 0"
        ))
        .bind(needle)
        .bind(&hex)
        .fetch_one(pool)
        .await
        .unwrap();
        if hits > 0 {
            found.push(table);
        }
    }
    found
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn passwords_and_keys_are_stored_as_hashes_only(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), Workers::NONE).await;
    let user = app
        .create_user("dev@example.com", "DEV", Some(PASSWORD))
        .await;
    let key = app.create_key(&user).await;
    let (_, browser) = Browser::login(&app, "dev@example.com", PASSWORD).await;
    let cookie = browser.unwrap().cookie;
    let session_token = cookie.split_once('=').unwrap().1;

    for (what, secret) in [
        ("password", PASSWORD),
        ("API key", key.as_str()),
        ("admin key", ADMIN_KEY),
        ("session token", session_token),
    ] {
        assert_eq!(
            tables_containing(&pool, secret).await,
            Vec::<String>::new(),
            "the {what} is in the database"
        );
    }
    let (hash,): (String,) =
        sqlx::query_as("select password_hash from users where email = 'dev@example.com'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn changes_and_logins_are_in_the_audit_log_for_admins_only(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let dev = app
        .create_user("dev@example.com", "DEV", Some(PASSWORD))
        .await;
    let dev_key = app.create_key(&dev).await;
    Browser::login(&app, "dev@example.com", "wrong password!!").await;
    Browser::login(&app, "dev@example.com", PASSWORD).await;
    let function = app
        .create_function_in("typescript", "audited", ECHO_TS, json!({}))
        .await;
    app.request(
        Method::PUT,
        &format!("/functions/{function}"),
        Some(json!({ "allowedUsers": [dev] })),
    )
    .await;
    app.request(Method::DELETE, &format!("/functions/{function}"), None)
        .await;
    let group = app
        .request(Method::POST, "/groups", Some(json!({ "name": "g" })))
        .await;
    let group = group.body["id"].as_str().unwrap();
    app.request(
        Method::POST,
        &format!("/groups/{group}/members"),
        Some(json!({ "userId": dev })),
    )
    .await;

    let audit = app.get("/audit?limit=100").await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.body);
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    for action in [
        "user.bootstrap",
        "user.create",
        "api_key.create",
        "auth.login_failed",
        "auth.login",
        "function.create",
        "function.permissions",
        "function.delete",
        "group.create",
        "group.member_add",
    ] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
    let failed = app.get("/audit?action=auth.login_failed").await;
    let entry = &failed.body["items"][0];
    assert_eq!(entry["details"]["email"], "dev@example.com");
    assert_eq!(entry["sourceAddress"], "127.0.0.1");
    assert!(
        !failed.body.to_string().contains("wrong password"),
        "{}",
        failed.body
    );
    let by_target = app.get(&format!("/audit?targetId={function}")).await;
    let target_actions: Vec<&str> = by_target.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        target_actions,
        ["function.delete", "function.permissions", "function.create"]
    );
    assert!(by_target.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actorEmail"] == "admin@localhost"));

    let as_dev = app
        .request_with(&client_with_key(&dev_key), Method::GET, "/audit", None)
        .await;
    as_dev.problem(StatusCode::FORBIDDEN);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_spent_rate_limit_answers_429_with_retry_after_and_recovers(pool: PgPool) {
    let config = plat_api::ApiConfig {
        rate_limit_dev_per_sec: 1.0,
        rate_limit_dev_burst: 3,
        ..plat_tests::api_config()
    };
    let app = TestApp::spawn_configured(pool, Workers::NONE, config).await;
    let dev = app.create_user("dev@example.com", "DEV", None).await;
    let dev = client_with_key(&app.create_key(&dev).await);

    for _ in 0..3 {
        let reply = app.request_with(&dev, Method::GET, "/me", None).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let limited = app.request_with(&dev, Method::GET, "/me", None).await;
    limited.problem(StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let admin = app.get("/me").await;
    assert_eq!(admin.status, StatusCode::OK, "limits are per credential");

    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    let recovered = app.request_with(&dev, Method::GET, "/me", None).await;
    assert_eq!(recovered.status, StatusCode::OK, "{}", recovered.body);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn devs_read_only_their_own_executions(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let function = app
        .ready_function_in("typescript", "shared", ECHO_TS, json!({}))
        .await;
    let alice = app.create_user("alice@example.com", "DEV", None).await;
    let bob = app.create_user("bob@example.com", "DEV", None).await;
    let alice = client_with_key(&app.create_key(&alice).await);
    let bob = client_with_key(&app.create_key(&bob).await);

    let run = |client: reqwest::Client, key: &'static str| {
        let app = &app;
        let function = function.clone();
        async move {
            let response = client
                .post(format!(
                    "{}/functions/{function}/execute?wait=30",
                    app.base_url
                ))
                .header("idempotency-key", key)
                .json(&json!({ "from": key }))
                .send()
                .await
                .unwrap();
            let body: Value = response.json().await.unwrap();
            body["id"].as_str().unwrap().to_owned()
        }
    };
    let alices = run(alice.clone(), "same-key").await;
    let bobs = run(bob.clone(), "same-key").await;
    assert_ne!(alices, bobs, "an Idempotency-Key is the caller's own");

    let read = app
        .request_with(&bob, Method::GET, &format!("/executions/{alices}"), None)
        .await;
    read.problem(StatusCode::NOT_FOUND);
    let cancel = app
        .request_with(
            &bob,
            Method::POST,
            &format!("/executions/{alices}/cancel"),
            None,
        )
        .await;
    cancel.problem(StatusCode::NOT_FOUND);
    let own = app
        .request_with(&bob, Method::GET, &format!("/executions/{bobs}"), None)
        .await;
    assert_eq!(own.status, StatusCode::OK);
    let listed = app
        .request_with(
            &bob,
            Method::GET,
            &format!("/functions/{function}/executions"),
            None,
        )
        .await;
    let ids: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [bobs.as_str()]);
    let all = app.get(&format!("/functions/{function}/executions")).await;
    assert_eq!(
        all.body["items"].as_array().unwrap().len(),
        2,
        "admins see every run"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn users_groups_and_keys_are_managed_by_admins_and_keys_by_their_owners(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let dev = app
        .create_user("dev@example.com", "DEV", Some(PASSWORD))
        .await;
    let other = app.create_user("other@example.com", "DEV", None).await;
    let dev_client = client_with_key(&app.create_key(&dev).await);

    let duplicate = app
        .request(
            Method::POST,
            "/users",
            Some(json!({ "email": "DEV@example.com", "role": "DEV" })),
        )
        .await;
    duplicate.problem(StatusCode::CONFLICT);
    let weak = app
        .request(
            Method::POST,
            "/users",
            Some(json!({ "email": "x@example.com", "role": "DEV", "password": "short" })),
        )
        .await;
    weak.problem(StatusCode::BAD_REQUEST);
    for (method, path, body) in [
        (Method::GET, "/users".to_owned(), None),
        (
            Method::POST,
            "/users".to_owned(),
            Some(json!({ "email": "y@example.com", "role": "ADMIN" })),
        ),
        (
            Method::POST,
            "/groups".to_owned(),
            Some(json!({ "name": "mine" })),
        ),
        (
            Method::POST,
            "/api-keys".to_owned(),
            Some(json!({ "name": "for other", "userId": other })),
        ),
        (
            Method::PUT,
            format!("/users/{dev}"),
            Some(json!({ "role": "ADMIN" })),
        ),
    ] {
        let reply = app.request_with(&dev_client, method, &path, body).await;
        reply.problem(StatusCode::FORBIDDEN);
    }
    let someone_else = app
        .request_with(&dev_client, Method::GET, &format!("/users/{other}"), None)
        .await;
    someone_else.problem(StatusCode::NOT_FOUND);
    let themselves = app
        .request_with(&dev_client, Method::GET, &format!("/users/{dev}"), None)
        .await;
    assert_eq!(themselves.status, StatusCode::OK);

    // A DEV sees and revokes only their own keys.
    let others_key = app.create_key(&other).await;
    let all_keys = app.get("/api-keys").await;
    let others_key_id = all_keys.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| {
            others_key.starts_with(k["prefix"].as_str().unwrap()) && k["userId"] == other.as_str()
        })
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mine = app
        .request_with(&dev_client, Method::GET, "/api-keys", None)
        .await;
    assert!(mine.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["userId"] == dev.as_str()));
    let revoke_other = app
        .request_with(
            &dev_client,
            Method::DELETE,
            &format!("/api-keys/{others_key_id}"),
            None,
        )
        .await;
    revoke_other.problem(StatusCode::NOT_FOUND);
    assert!(
        !all_keys.body.to_string().contains(&others_key),
        "keys are shown once only"
    );

    // Disabling a user stops their keys at once.
    let disable = app
        .request(
            Method::PUT,
            &format!("/users/{dev}"),
            Some(json!({ "disabled": true })),
        )
        .await;
    assert_eq!(disable.status, StatusCode::OK, "{}", disable.body);
    let disabled = app
        .request_with(&dev_client, Method::GET, "/me", None)
        .await;
    disabled.problem(StatusCode::UNAUTHORIZED);

    // The last admin cannot be demoted, nor a user named in an access list deleted.
    let admin_id = app.get("/me").await.body["id"].as_str().unwrap().to_owned();
    let demote = app
        .request(
            Method::PUT,
            &format!("/users/{admin_id}"),
            Some(json!({ "role": "DEV" })),
        )
        .await;
    demote.problem(StatusCode::CONFLICT);
    let function = app
        .create_function_in("typescript", "private", ECHO_TS, json!({}))
        .await;
    app.request(
        Method::PUT,
        &format!("/functions/{function}"),
        Some(json!({ "allowedUsers": [other] })),
    )
    .await;
    let delete_named = app
        .request(Method::DELETE, &format!("/users/{other}"), None)
        .await;
    assert!(delete_named
        .problem(StatusCode::CONFLICT)
        .contains("private"));
    let unknown_user = app
        .request(
            Method::PUT,
            &format!("/functions/{function}"),
            Some(json!({ "allowedUsers": ["0190f2a4-0000-7000-8000-000000000000"] })),
        )
        .await;
    unknown_user.problem(StatusCode::BAD_REQUEST);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_bootstrap_admin_is_created_once(pool: PgPool) {
    let mut app = TestApp::spawn_with(pool.clone(), Workers::NONE).await;
    let me = app.get("/me").await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["role"], "ADMIN");
    assert_eq!(me.body["hasPassword"], false);

    // Another API process with another bootstrap key: users exist, so its
    // key is not made an admin's.
    let second = app
        .start_api(plat_api::ApiConfig {
            bootstrap_admin_key: Some(
                "plat_another-key-that-is-long-enough-00000"
                    .to_owned()
                    .into(),
            ),
            ..plat_tests::api_config()
        })
        .await;
    let with_other_key = client_with_key("plat_another-key-that-is-long-enough-00000")
        .get(format!("{second}/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(with_other_key.status(), StatusCode::UNAUTHORIZED);
    let (users,): (i64,) = sqlx::query_as("select count(*) from users")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(users, 1);
}

/// Whether `password` signs `email` in at the API at `base`.
async fn signs_in(base: &str, email: &str, password: &str) -> bool {
    let response = reqwest::Client::new()
        .post(format!("{base}/auth/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("login sent");
    response.status() == StatusCode::OK
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_bootstrap_password_is_given_once_and_never_replaces_a_chosen_one(pool: PgPool) {
    // An older platform: the bootstrap admin exists without a password.
    let mut app = TestApp::spawn_with(pool, Workers::NONE).await;
    let admin_id = app.get("/me").await.body["id"].as_str().unwrap().to_owned();
    let with_password = |password: &str| plat_api::ApiConfig {
        bootstrap_admin_key: Some(ADMIN_KEY.to_owned().into()),
        bootstrap_admin_password: Some(password.to_owned().into()),
        ..plat_tests::api_config()
    };

    let first = app.start_api(with_password("first-password-0001")).await;
    let given = signs_in(&first, "admin@localhost", "first-password-0001").await;
    let changed = app
        .request(
            Method::PUT,
            &format!("/users/{admin_id}"),
            Some(json!({ "password": "chosen-password-0002", "currentPassword": "first-password-0001" })),
        )
        .await;
    let later = app.start_api(with_password("later-password-0003")).await;
    let kept = signs_in(&later, "admin@localhost", "chosen-password-0002").await;
    let replaced = signs_in(&later, "admin@localhost", "later-password-0003").await;
    let too_short = plat_api::serve_on(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        app.pool.clone(),
        with_password("short"),
        tokio_util::sync::CancellationToken::new(),
    )
    .await;

    assert!(
        given,
        "the passwordless bootstrap admin got the configured password"
    );
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert!(kept, "the admin's own password still works");
    assert!(
        !replaced,
        "a configured password never replaces a chosen one"
    );
    let error = format!("{:#}", too_short.unwrap_err());
    assert!(error.contains("PLAT_BOOTSTRAP_ADMIN_PASSWORD"), "{error}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_new_platform_bootstrap_admin_can_sign_in_with_the_configured_password(pool: PgPool) {
    let app = TestApp::spawn_configured(
        pool,
        Workers::NONE,
        plat_api::ApiConfig {
            bootstrap_admin_password: Some("bootstrap-password-01".to_owned().into()),
            ..plat_tests::api_config()
        },
    )
    .await;

    let me = app.get("/me").await;

    assert_eq!(me.body["hasPassword"], true, "{}", me.body);
    assert!(signs_in(&app.base_url, "admin@localhost", "bootstrap-password-01").await);
    assert!(!signs_in(&app.base_url, "admin@localhost", "another-password-02").await);
}
