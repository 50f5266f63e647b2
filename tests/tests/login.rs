//! Signing in, safely for many tenants (docs/security.md, "Browser sessions"
//! and "Rate limits"): login throttled per client address and per account,
//! the client address behind trusted proxies only, invalid credentials
//! throttled per address, bounded password hashing, first passwords only
//! from an admin or a one-time reset token, and a `Secure`, `__Host-`
//! session cookie.

use plat_tests::{client_with_key, Reply, TestApp, Workers, MIGRATOR};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

const PASSWORD: &str = "correct horse battery staple";

/// Posts a login, as from `forwarded_for` when given (`X-Forwarded-For`,
/// which only a trusted proxy's word makes true).
async fn login(app: &TestApp, email: &str, password: &str, forwarded_for: Option<&str>) -> Reply {
    let mut request = reqwest::Client::new()
        .post(format!("{}/auth/login", app.base_url))
        .json(&json!({ "email": email, "password": password }));
    if let Some(address) = forwarded_for {
        request = request.header("x-forwarded-for", address);
    }
    plat_tests::read(request.send().await.expect("login sent")).await
}

/// Asserts `reply` is a 429 with `Retry-After` that names `setting`.
fn assert_throttled(reply: &Reply, setting: &str) {
    let detail = reply.problem(StatusCode::TOO_MANY_REQUESTS);
    assert!(detail.contains(setting), "{detail}");
    let retry_after: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
}

/// The source addresses of the failed logins in the audit log, oldest first.
async fn failed_login_sources(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar(
        "select source_address from audit_log where action = 'auth.login_failed' order by at, id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn one_address_trying_many_accounts_is_refused_and_its_forwarded_for_is_ignored(
    pool: PgPool,
) {
    let config = plat_api::ApiConfig {
        login_attempts_per_minute: 3,
        login_attempts_per_account_per_minute: 100,
        ..plat_tests::api_config()
    };
    let app = TestApp::spawn_configured(pool, Workers::NONE, config).await;

    // No trusted proxies: each attempt claims another address, in vain.
    let mut replies = Vec::new();
    for i in 1..=4 {
        let (email, claimed) = (format!("user{i}@example.com"), format!("203.0.113.{i}"));
        replies.push(login(&app, &email, PASSWORD, Some(&claimed)).await);
    }

    for reply in &replies[..3] {
        reply.problem(StatusCode::UNAUTHORIZED);
    }
    assert_throttled(&replies[3], "PLAT_LOGIN_ATTEMPTS_PER_MINUTE");
    assert_eq!(
        failed_login_sources(&app).await,
        ["127.0.0.1"; 3],
        "the peer, not what it forwarded, is the client; a refused attempt is not audited"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_per_account_limit_holds_across_addresses_behind_a_trusted_proxy(pool: PgPool) {
    let config = plat_api::ApiConfig {
        login_attempts_per_minute: 100,
        login_attempts_per_account_per_minute: 3,
        trusted_proxies: "127.0.0.1".parse().unwrap(),
        ..plat_tests::api_config()
    };
    let app = TestApp::spawn_configured(pool, Workers::NONE, config).await;
    app.create_user("victim@example.com", "DEV", Some(PASSWORD))
        .await;

    let mut guesses = Vec::new();
    for i in 1..=4 {
        // The client claims 198.51.100.x; the trusted proxy appended the
        // address it saw: the right-most untrusted hop is the client.
        let forwarded = format!("198.51.100.{i}, 203.0.113.{i}");
        guesses.push(
            login(
                &app,
                "Victim@example.com",
                "a wrong guess!",
                Some(&forwarded),
            )
            .await,
        );
    }
    let right_password_too = login(&app, "victim@example.com", PASSWORD, Some("203.0.113.9")).await;
    let other_account = login(&app, "other@example.com", PASSWORD, Some("203.0.113.4")).await;

    for guess in &guesses[..3] {
        guess.problem(StatusCode::UNAUTHORIZED);
    }
    assert_throttled(&guesses[3], "PLAT_LOGIN_ATTEMPTS_PER_ACCOUNT_PER_MINUTE");
    assert_throttled(
        &right_password_too,
        "PLAT_LOGIN_ATTEMPTS_PER_ACCOUNT_PER_MINUTE",
    );
    other_account.problem(StatusCode::UNAUTHORIZED);
    assert_eq!(
        failed_login_sources(&app).await,
        ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"],
        "the audit log names the client the trusted proxy saw"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn ipv6_clients_share_the_login_limit_of_their_64(pool: PgPool) {
    let config = plat_api::ApiConfig {
        login_attempts_per_minute: 2,
        trusted_proxies: "127.0.0.0/8".parse().unwrap(),
        ..plat_tests::api_config()
    };
    let app = TestApp::spawn_configured(pool, Workers::NONE, config).await;

    let first = login(&app, "a@example.com", PASSWORD, Some("2001:db8:1:2::1")).await;
    let second = login(&app, "b@example.com", PASSWORD, Some("2001:db8:1:2::2")).await;
    let same_64 = login(
        &app,
        "c@example.com",
        PASSWORD,
        Some("2001:db8:1:2:ffff::3"),
    )
    .await;
    let next_64 = login(&app, "d@example.com", PASSWORD, Some("2001:db8:1:3::1")).await;

    first.problem(StatusCode::UNAUTHORIZED);
    second.problem(StatusCode::UNAUTHORIZED);
    assert_throttled(&same_64, "PLAT_LOGIN_ATTEMPTS_PER_MINUTE");
    next_64.problem(StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_overlong_email_is_refused_before_the_lookup_and_writes_no_audit_row(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let overlong = format!("{}@example.com", "a".repeat(250));

    let reply = login(&app, &overlong, PASSWORD, None).await;
    let at_limit = login(
        &app,
        &format!("{}@example.com", "a".repeat(242)),
        PASSWORD,
        None,
    )
    .await;

    let detail = reply.problem(StatusCode::BAD_REQUEST);
    assert!(detail.contains("254"), "{detail}");
    at_limit.problem(StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.count(&format!("audit_log where actor_email = '{overlong}'"))
            .await,
        0
    );
    assert_eq!(
        app.count("audit_log where action = 'auth.login_failed'")
            .await,
        1
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn concurrent_logins_all_finish_when_one_hash_runs_at_a_time(pool: PgPool) {
    let config = plat_api::ApiConfig {
        password_hash_concurrency: 1,
        login_attempts_per_minute: 100,
        login_attempts_per_account_per_minute: 100,
        ..plat_tests::api_config()
    };
    let app = TestApp::spawn_configured(pool, Workers::NONE, config).await;
    app.create_user("dev@example.com", "DEV", Some(PASSWORD))
        .await;

    let logins: Vec<_> = (0..8)
        .map(|i| {
            let url = format!("{}/auth/login", app.base_url);
            let password = if i % 2 == 0 {
                PASSWORD
            } else {
                "not the password"
            };
            tokio::spawn(async move {
                let response = reqwest::Client::new()
                    .post(url)
                    .json(&json!({ "email": "dev@example.com", "password": password }))
                    .send()
                    .await
                    .expect("login sent");
                response.status()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for login in logins {
        statuses.push(login.await.unwrap());
    }

    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::UNAUTHORIZED].repeat(4),
        "every login waited its turn and got its own answer"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn invalid_credentials_are_limited_per_address_and_valid_ones_from_it_are_not(pool: PgPool) {
    let config = plat_api::ApiConfig {
        invalid_credentials_per_minute: 3,
        trusted_proxies: "127.0.0.1".parse().unwrap(),
        ..plat_tests::api_config()
    };
    let app = TestApp::spawn_configured(pool, Workers::NONE, config).await;
    let bogus_key = client_with_key("plat_not-a-key-anyone-was-given-0000000000000000");
    let bogus_session = reqwest::Client::new();

    let mut refused = Vec::new();
    for _ in 0..3 {
        refused.push(app.request_with(&bogus_key, Method::GET, "/me", None).await);
    }
    let limited_key = app.request_with(&bogus_key, Method::GET, "/me", None).await;
    let limited_session = plat_tests::read(
        bogus_session
            .get(format!("{}/me", app.base_url))
            .header("cookie", "__Host-plat_session=not-a-session")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let valid = app.get("/me").await;
    let elsewhere = plat_tests::read(
        bogus_key
            .get(format!("{}/me", app.base_url))
            .header("x-forwarded-for", "203.0.113.7")
            .send()
            .await
            .unwrap(),
    )
    .await;

    for reply in &refused {
        reply.problem(StatusCode::UNAUTHORIZED);
    }
    assert_throttled(&limited_key, "PLAT_INVALID_CREDENTIALS_PER_MINUTE");
    assert_throttled(&limited_session, "PLAT_INVALID_CREDENTIALS_PER_MINUTE");
    assert_eq!(
        valid.status,
        StatusCode::OK,
        "a valid key from the same address"
    );
    elsewhere.problem(StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_key_only_account_cannot_give_itself_a_first_password(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let dev = app.create_user("dev@example.com", "DEV", None).await;
    let dev_key = client_with_key(&app.create_key(&dev).await);

    let by_key = app
        .request_with(
            &dev_key,
            Method::PUT,
            &format!("/users/{dev}"),
            Some(json!({ "password": PASSWORD })),
        )
        .await;
    let signed_in = login(&app, "dev@example.com", PASSWORD, None).await;
    let by_admin = app
        .request(
            Method::PUT,
            &format!("/users/{dev}"),
            Some(json!({ "password": PASSWORD })),
        )
        .await;
    let after_admin = login(&app, "dev@example.com", PASSWORD, None).await;

    let detail = by_key.problem(StatusCode::FORBIDDEN);
    assert!(detail.contains("reset token"), "{detail}");
    signed_in.problem(StatusCode::UNAUTHORIZED);
    assert_eq!(by_admin.status, StatusCode::OK, "{}", by_admin.body);
    assert_eq!(after_admin.status, StatusCode::OK, "{}", after_admin.body);
}

/// Sets a password with a reset token, without credentials.
async fn reset(app: &TestApp, token: &str, password: &str) -> Reply {
    let response = reqwest::Client::new()
        .post(format!("{}/auth/password-reset", app.base_url))
        .json(&json!({ "token": token, "password": password }))
        .send()
        .await
        .expect("reset sent");
    plat_tests::read(response).await
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_admins_reset_token_sets_a_password_once_before_it_expires(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let dev = app.create_user("dev@example.com", "DEV", None).await;
    let dev_key = client_with_key(&app.create_key(&dev).await);
    let path = format!("/users/{dev}/password-reset");
    let issue = || app.request(Method::POST, &path, None);

    let by_dev = app.request_with(&dev_key, Method::POST, &path, None).await;
    let superseded = issue().await;
    let issued = issue().await;
    let token = issued.body["token"].as_str().unwrap().to_owned();
    let old_token = superseded.body["token"].as_str().unwrap();
    let with_old = reset(&app, old_token, PASSWORD).await;
    let too_short = reset(&app, &token, "short").await;
    let used = reset(&app, &token, PASSWORD).await;
    let signed_in = login(&app, "dev@example.com", PASSWORD, None).await;
    let again = reset(&app, &token, "another password 2").await;
    let expiring = issue().await;
    sqlx::query(
        "update password_resets set expires_at = now() - interval '1 second' where id = $1",
    )
    .bind(uuid::Uuid::parse_str(expiring.body["id"].as_str().unwrap()).unwrap())
    .execute(&app.pool)
    .await
    .unwrap();
    let expired = reset(
        &app,
        expiring.body["token"].as_str().unwrap(),
        "another password 3",
    )
    .await;

    by_dev.problem(StatusCode::FORBIDDEN);
    assert_eq!(issued.status, StatusCode::CREATED, "{}", issued.body);
    assert!(token.starts_with("platreset_"), "{token}");
    assert!(issued.body["expiresAt"].is_string());
    assert!(with_old
        .problem(StatusCode::BAD_REQUEST)
        .contains("reset token"));
    too_short.problem(StatusCode::BAD_REQUEST);
    assert_eq!(used.status, StatusCode::NO_CONTENT, "{}", used.body);
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.body);
    again.problem(StatusCode::BAD_REQUEST);
    expired.problem(StatusCode::BAD_REQUEST);
    let stored_in_clear = app
        .count(&format!(
            "password_resets where encode(token_hash, 'escape') like '%{}%'",
            &token["platreset_".len()..]
        ))
        .await;
    assert_eq!(stored_in_clear, 0);
    let actions: Vec<String> = sqlx::query_scalar(
        "select action from audit_log where target_id = $1 and action like '%password_reset%' order by at, id",
    )
    .bind(&dev)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        actions,
        [
            "user.password_reset_issued",
            "user.password_reset_issued",
            "auth.password_reset",
            "user.password_reset_issued"
        ]
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_session_cookie_is_secure_host_prefixed_and_read_only_by_that_name(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    app.create_user("dev@example.com", "DEV", Some(PASSWORD))
        .await;

    let reply = login(&app, "dev@example.com", PASSWORD, None).await;
    let set_cookie = reply.headers["set-cookie"].to_str().unwrap().to_owned();
    let pair = set_cookie.split(';').next().unwrap();
    let token = pair.split_once('=').unwrap().1;
    let me = |cookie: String| {
        let url = format!("{}/me", app.base_url);
        async move {
            let response = reqwest::Client::new()
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            response.status()
        }
    };

    assert!(pair.starts_with("__Host-plat_session="), "{set_cookie}");
    let attributes: Vec<&str> = set_cookie.split(';').skip(1).map(str::trim).collect();
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attributes.contains(&attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Domain"), "{set_cookie}");
    assert_eq!(me(pair.to_owned()).await, StatusCode::OK);
    assert_eq!(
        me(format!("plat_session={token}")).await,
        StatusCode::UNAUTHORIZED,
        "the unprefixed name, which a subdomain could plant, is not read"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn with_secure_cookies_turned_off_the_cookie_is_plain_plat_session(pool: PgPool) {
    let config = plat_api::ApiConfig {
        cookie_secure: Some(false),
        ..plat_tests::api_config()
    };
    let app = TestApp::spawn_configured(pool, Workers::NONE, config).await;
    app.create_user("dev@example.com", "DEV", Some(PASSWORD))
        .await;

    let reply = login(&app, "dev@example.com", PASSWORD, None).await;
    let set_cookie = reply.headers["set-cookie"].to_str().unwrap().to_owned();
    let pair = set_cookie.split(';').next().unwrap().to_owned();
    let me = reqwest::Client::new()
        .get(format!("{}/me", app.base_url))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();

    assert!(pair.starts_with("plat_session="), "{set_cookie}");
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert_eq!(me.status(), StatusCode::OK);
}
