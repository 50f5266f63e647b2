//! The `api` binary, logging at debug level, never writes a password, an API
//! key, a session token or an environment value to its log.

use std::process::{Command, Stdio};

use plat_tests::{
    client_with_key, free_port, wait_until_ready, workspace_binary, TestApp, Workers, ADMIN_KEY,
    MIGRATOR, SECRETS_KEY,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

const PASSWORD: &str = "a password that must not be logged";
const SECRET_VALUE: &str = "environment-secret-that-must-not-be-logged";

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_api_logs_no_password_key_token_or_secret(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let port = free_port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut api = Command::new(workspace_binary("api"))
        .env("DATABASE_URL", app.database_url())
        .env("PLAT_LISTEN", format!("127.0.0.1:{port}"))
        .env("PLAT_BOOTSTRAP_ADMIN_KEY", ADMIN_KEY)
        .env("PLAT_SECRETS_KEY", SECRETS_KEY)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(log.reopen().unwrap())
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("start the api binary");
    let base = format!("http://127.0.0.1:{port}");
    let admin = client_with_key(ADMIN_KEY);
    wait_until_ready(&base).await;

    let post = |client: &reqwest::Client, path: &str, body: Value| {
        client.post(format!("{base}{path}")).json(&body).send()
    };
    let user: Value = post(
        &admin,
        "/users",
        json!({ "email": "dev@example.com", "role": "DEV", "password": PASSWORD }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let key: Value = post(
        &admin,
        "/api-keys",
        json!({ "userId": user["id"], "name": "k" }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let key = key["key"].as_str().unwrap().to_owned();
    let me = client_with_key(&key)
        .get(format!("{base}/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let login = post(
        &reqwest::Client::new(),
        "/auth/login",
        json!({ "email": "dev@example.com", "password": PASSWORD }),
    )
    .await
    .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    let token = cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    let wrong = post(
        &reqwest::Client::new(),
        "/auth/login",
        json!({ "email": "dev@example.com", "password": format!("{PASSWORD}!") }),
    )
    .await
    .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let environment = post(
        &admin,
        "/environments",
        json!({ "name": "prod", "variables": { "TOKEN": SECRET_VALUE } }),
    )
    .await
    .unwrap();
    assert_eq!(environment.status(), StatusCode::CREATED);

    api.kill().ok();
    api.wait().ok();
    let written = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        written.contains("API listening"),
        "the log was captured: {written}"
    );
    assert!(
        written.contains("/auth/login"),
        "requests are logged at debug: {written}"
    );
    for (what, secret) in [
        ("password", PASSWORD),
        ("admin key", ADMIN_KEY),
        ("API key", key.as_str()),
        ("session token", token.as_str()),
        ("secrets key", SECRETS_KEY),
        ("environment value", SECRET_VALUE),
    ] {
        assert!(!written.contains(secret), "the {what} is in the log");
    }
}
