//! Sources, lockfiles, environments and webhook secrets at rest: sealed with
//! `PLAT_SECRETS_KEY`, unreadable in a database dump, re-sealed by the API
//! during a key rotation, and older plaintext sources sealed at start
//! (docs/security.md, "Key rotation"; docs/dependencies.md, "Sources at rest").

use std::path::PathBuf;
use std::process::Command;

use plat_common::secrets::{PreviousSecretsKeys, SecretsKey, VersionPart};
use plat_tests::{
    api_config, compiler_config, executor_config, TestApp, Workers, MIGRATOR, SECRETS_KEY,
};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

/// The key a rotation moves to (32 bytes of hex).
const NEW_KEY: &str = "6e6577206b657920666f722074686520726f746174696f6e20746573742121ff";
/// In a comment only: a string literal could end up in the module, which is
/// stored (in clear) for the executors.
const SOURCE_MARKER: &str = "sealed-source-marker-5b0c7d1e";
const SECRET_VALUE: &str = "environment-secret-value-4f2a9c";

/// A handler that reports what its environment gave it, without echoing a
/// value (outputs are stored in clear).
fn env_reader(note: &str) -> String {
    format!(
        r#"
// {note}
use serde_json::{{json, Value}};
pub fn handler(_input: Value) -> Result<Value, String> {{
    Ok(json!({{ "tokenLength": std::env::var("TOKEN").map(|t| t.len()).unwrap_or(0) }}))
}}
"#
    )
}

/// Creates an environment with the secret `TOKEN` and attaches it to a new
/// function built from `source`; answers (function, environment).
async fn function_with_environment(app: &TestApp, source: &str) -> (String, String) {
    let created = app
        .request(
            Method::POST,
            "/environments",
            Some(json!({
                "name": "production",
                "variables": { "TOKEN": { "value": SECRET_VALUE, "secret": true } },
            })),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let environment = created.body["id"].as_str().unwrap().to_owned();
    let function = app.create_function("env-reader", source, json!({})).await;
    let attached = app
        .request(
            Method::PUT,
            &format!("/functions/{function}"),
            Some(json!({ "environmentId": environment })),
        )
        .await;
    assert_eq!(attached.status, StatusCode::OK, "{}", attached.body);
    (function, environment)
}

/// `pg_dump` of the same major version as the server's tools: next to
/// `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`, else
/// on PATH.
fn pg_dump() -> PathBuf {
    let bindir = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let newest_versioned = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .map(|major| PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")));
    bindir
        .into_iter()
        .chain(newest_versioned)
        .map(|dir| dir.join("pg_dump"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("pg_dump"))
}

/// Every sealed value in the database, with the owner it is sealed for:
/// (what, owner, stored).
async fn sealed_values(pool: &PgPool) -> Vec<(String, Uuid, Vec<u8>)> {
    let mut values = Vec::new();
    type Version = (Uuid, i32, Option<Vec<u8>>, Option<Vec<u8>>);
    let versions: Vec<Version> = sqlx::query_as(
        "select function_id, version, source_sealed, lockfile_sealed from function_versions",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (function, version, source, lockfile) in versions {
        if let Some(source) = source {
            let owner = VersionPart::Source.owner(function, version);
            values.push((format!("source {version}"), owner, source));
        }
        if let Some(lockfile) = lockfile {
            let owner = VersionPart::Lockfile.owner(function, version);
            values.push((format!("lockfile {version}"), owner, lockfile));
        }
    }
    let environments: Vec<(Uuid, Vec<u8>)> =
        sqlx::query_as("select id, variables from environments")
            .fetch_all(pool)
            .await
            .unwrap();
    values.extend(
        environments
            .into_iter()
            .map(|(id, v)| ("environment".to_owned(), id, v)),
    );
    let secrets: Vec<(Uuid, Vec<u8>)> =
        sqlx::query_as("select id, webhook_secret from functions where webhook_secret is not null")
            .fetch_all(pool)
            .await
            .unwrap();
    values.extend(
        secrets
            .into_iter()
            .map(|(id, v)| ("webhook secret".to_owned(), id, v)),
    );
    values
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_database_dump_holds_neither_sources_nor_secret_values(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let source = env_reader(SOURCE_MARKER);
    let (function, _) = function_with_environment(&app, &source).await;
    assert_eq!(app.wait_for_build(&function, 1).await["status"], "READY");
    let run = app.execute(&function, json!(null), 30).await;
    assert_eq!(run.status, StatusCode::OK, "{}", run.body);
    assert_eq!(
        run.body["output"],
        json!({ "tokenLength": SECRET_VALUE.len() })
    );
    let version = app.get(&format!("/functions/{function}/versions/1")).await;
    assert_eq!(version.status, StatusCode::OK, "{}", version.body);
    assert_eq!(version.body["source"], source, "readers see it in clear");

    let dump = Command::new(pg_dump())
        .arg("--dbname")
        .arg(app.database_url())
        .output()
        .expect("pg_dump runs");
    assert!(
        dump.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains("env-reader") && dump.contains(&function),
        "the dump holds the function's row"
    );
    assert!(!dump.contains(SOURCE_MARKER), "the source is in the dump");
    assert!(
        !dump.contains(SECRET_VALUE),
        "a secret value is in the dump"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_rotation_reseals_everything_and_the_old_key_can_then_go(pool: PgPool) {
    let (old_key, new_key): (SecretsKey, SecretsKey) =
        (SECRETS_KEY.parse().unwrap(), NEW_KEY.parse().unwrap());
    // Sealed with the old key: a function, its environment, a webhook secret.
    let mut app = TestApp::spawn_with(pool, Workers::NONE).await;
    let source = env_reader("sealed with the old key");
    let (function, _) = function_with_environment(&app, &source).await;
    let function_id: Uuid = function.parse().unwrap();
    sqlx::query("update functions set webhook_secret = $2 where id = $1")
        .bind(function_id)
        .bind(old_key.seal_bytes(function_id, b"signing secret"))
        .execute(&app.pool)
        .await
        .unwrap();
    let before = sealed_values(&app.pool).await;
    assert_eq!(before.len(), 3, "source, environment, webhook secret");
    for (what, owner, stored) in &before {
        assert!(new_key.open_bytes(*owner, stored).is_err(), "{what}");
    }

    // The new key, with the old one as previous: the API re-seals at start.
    app.stop_api();
    let rotating = app
        .start_api(plat_api::ApiConfig {
            secrets_key: Some(new_key.clone()),
            secrets_previous_keys: SECRETS_KEY.parse::<PreviousSecretsKeys>().unwrap(),
            ..api_config()
        })
        .await;
    plat_tests::wait_until_ready(&rotating).await;
    app.wait_until("plat_never_notified", || async {
        let values = sealed_values(&app.pool).await;
        values
            .iter()
            .all(|(_, owner, stored)| new_key.open_bytes(*owner, stored).is_ok())
            .then_some(())
    })
    .await;
    let after = sealed_values(&app.pool).await;
    assert_eq!(after.len(), before.len());
    for (what, owner, stored) in &after {
        assert!(
            old_key.open_bytes(*owner, stored).is_err(),
            "{what} re-sealed"
        );
    }
    assert_eq!(
        new_key
            .open_bytes(
                function_id,
                &after.iter().find(|v| v.0 == "webhook secret").unwrap().2
            )
            .unwrap(),
        b"signing secret"
    );

    // Everything runs on the new key alone.
    let only_new = || plat_api::ApiConfig {
        secrets_key: Some(new_key.clone()),
        ..api_config()
    };
    app.base_url = app.start_api(only_new()).await;
    plat_tests::wait_until_ready(&app.base_url).await;
    app.start_compiler_with(plat_worker_compiler::CompilerConfig {
        secrets_key: Some(new_key.clone()),
        ..compiler_config()
    })
    .await;
    app.start_executor(plat_worker_executor::ExecutorConfig {
        secrets_key: Some(new_key.clone()),
        ..executor_config()
    })
    .await;
    let version = app.get(&format!("/functions/{function}/versions/1")).await;
    assert_eq!(version.status, StatusCode::OK, "{}", version.body);
    assert_eq!(version.body["source"], source);
    assert_eq!(app.wait_for_build(&function, 1).await["status"], "READY");

    let second = env_reader("a second version, sealed with the new key");
    let updated = app
        .request(
            Method::PUT,
            &format!("/functions/{function}"),
            Some(json!({ "source": second })),
        )
        .await;
    assert_eq!(updated.status, StatusCode::ACCEPTED, "{}", updated.body);
    assert_eq!(app.wait_for_build(&function, 2).await["status"], "READY");
    let run = app.execute(&function, json!(null), 30).await;
    assert_eq!(run.status, StatusCode::OK, "{}", run.body);
    assert_eq!(
        run.body["output"],
        json!({ "tokenLength": SECRET_VALUE.len() }),
        "the executor opened the re-sealed environment: {}",
        run.body
    );
    let environments = app.get("/environments").await;
    assert_eq!(environments.status, StatusCode::OK, "{}", environments.body);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_plaintext_source_from_before_sealing_is_sealed_at_start(pool: PgPool) {
    let mut app = TestApp::spawn_with(pool, Workers::NONE).await;
    let source = env_reader("stored in plaintext, as before sealed sources");
    let function = app.create_function("old", &source, json!({})).await;
    let function_id: Uuid = function.parse().unwrap();
    // As a row from before the migration: plaintext, nothing sealed.
    sqlx::query(
        "update function_versions set source = $2, source_sealed = null
         where function_id = $1 and version = 1",
    )
    .bind(function_id)
    .bind(&source)
    .execute(&app.pool)
    .await
    .unwrap();

    app.base_url = app.start_api(api_config()).await;
    let sealed: Vec<u8> = app
        .wait_until("plat_never_notified", || async {
            let (plaintext, sealed): (Option<String>, Option<Vec<u8>>) = sqlx::query_as(
                "select source, source_sealed from function_versions
                 where function_id = $1 and version = 1",
            )
            .bind(function_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
            sealed.filter(|_| plaintext.is_none())
        })
        .await;
    let key: SecretsKey = SECRETS_KEY.parse().unwrap();
    let owner = VersionPart::Source.owner(function_id, 1);
    assert_eq!(key.open_bytes(owner, &sealed).unwrap(), source.as_bytes());
    assert!(!String::from_utf8_lossy(&sealed).contains("plaintext, as before"));

    let version = app.get(&format!("/functions/{function}/versions/1")).await;
    assert_eq!(version.status, StatusCode::OK, "{}", version.body);
    assert_eq!(version.body["source"], source);
}
