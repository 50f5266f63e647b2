//! The operator's dependency policy (docs/dependencies.md) through the real
//! API and compiler worker: the allowlist refuses an unlisted crate, a
//! forbidden pattern fails the build at its position, an edit of the policy
//! file applies to the next build without a restart, and an advisory refuses
//! (or, under `warn`, annotates) a vulnerable version.

use std::path::{Path, PathBuf};

use plat_tests::{compiler_config, TestApp, Workers, HELLO, MIGRATOR};
use plat_worker_compiler::CompilerConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

/// A policy allowing two crates and nothing else.
const SMALL_POLICY: &str = r#"
[crates]
serde = { versions = ["1"], features = ["derive"] }
smallvec = "1"
"#;

/// An API with one compiler worker under the policy file at `policy`.
async fn app_with_policy(pool: PgPool, policy: &Path) -> TestApp {
    let mut app = TestApp::spawn_with(pool, Workers::NONE).await;
    app.start_compiler_with(CompilerConfig {
        dependency_policy: Some(policy.to_path_buf()),
        ..compiler_config()
    })
    .await;
    app
}

/// Writes `text` as `policy.toml` in `dir`.
fn write_policy(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).expect("write the policy");
    path
}

/// Registers a function with `dependencies` and returns its id.
async fn create(app: &TestApp, language: &str, source: &str, dependencies: Value) -> String {
    let reply = app
        .request(
            Method::POST,
            "/functions",
            Some(json!({
                "name": "policed",
                "language": language,
                "source": source,
                "dependencies": dependencies,
            })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    reply.body["id"].as_str().expect("an id").to_owned()
}

/// The `compileError` of a build that must have FAILED.
fn compile_error(function: &Value) -> &str {
    assert_eq!(function["status"], "FAILED", "{function}");
    function["compileError"].as_str().expect("a compileError")
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_crate_off_the_allowlist_fails_the_build_naming_it_and_the_allowlist(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_policy(pool, &write_policy(dir.path(), SMALL_POLICY)).await;

    let id = create(
        &app,
        "rust",
        HELLO,
        json!({ "left-pad-rs": "1", "serde": "1" }),
    )
    .await;
    let function = app.wait_for_build(&id, 1).await;

    assert_eq!(
        compile_error(&function),
        "dependency `left-pad-rs` is not on the operator's allowlist for crates (allowed crates: \
         serde, smallvec); the operator allows more in the dependency policy file \
         (PLAT_DEPENDENCY_POLICY; docs/dependencies.md)"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_feature_off_the_allowlist_fails_the_build_naming_it(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_policy(pool, &write_policy(dir.path(), SMALL_POLICY)).await;

    let id = create(
        &app,
        "rust",
        HELLO,
        json!({ "serde": { "version": "1", "features": ["derive", "rc"] } }),
    )
    .await;
    let function = app.wait_for_build(&id, 1).await;

    let error = compile_error(&function);
    assert!(
        error.starts_with("dependency `serde`: feature `rc` is not allowed by the operator's allowlist for crates (allowed features of serde: derive)"),
        "{error}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_forbidden_pattern_fails_the_build_at_its_position(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let policy = r#"
[[forbidden.rust]]
pattern = '\bstd::env::var\b'
message = "functions read their settings from the environment Plat gives them, not the process's"
"#;
    let app = app_with_policy(pool, &write_policy(dir.path(), policy)).await;
    let source = "use serde_json::Value;\n\npub fn handler(input: Value) -> Result<Value, String> {\n    let home = std::env::var(\"HOME\");\n    Ok(input)\n}\n";

    let id = create(&app, "rust", source, json!({})).await;
    let function = app.wait_for_build(&id, 1).await;

    assert_eq!(
        compile_error(&function),
        "handler.rs:4:16: error: functions read their settings from the environment Plat gives \
         them, not the process's (the operator's dependency policy forbids `\\bstd::env::var\\b` \
         in sources)\n4 |     let home = std::env::var(\"HOME\");\n  |                ^"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_edit_of_the_policy_file_applies_to_the_next_build(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let forbidding = "[[forbidden.typescript]]\npattern = 'Math\\.random'\nmessage = \"use crypto.getRandomValues\"\n";
    let path = write_policy(dir.path(), forbidding);
    let app = app_with_policy(pool, &path).await;
    let source = |n: u32| format!("export default () => ({{ n: {n}, r: Math.random() }});\n");

    let id = create(&app, "typescript", &source(1), json!({})).await;
    let first = app.wait_for_build(&id, 1).await;
    assert!(
        compile_error(&first).starts_with("handler.ts:1:34: error: use crypto.getRandomValues"),
        "{first}"
    );

    // The operator lifts the rule while the worker runs: the next build passes.
    std::fs::write(&path, "[forbidden]\ntypescript = []\n").unwrap();
    let put = app
        .request(
            Method::PUT,
            &format!("/functions/{id}"),
            Some(json!({ "source": source(2) })),
        )
        .await;
    assert_eq!(put.status, StatusCode::ACCEPTED, "{}", put.body);
    let second = app.wait_for_build(&id, 2).await;
    assert_eq!(second["status"], "READY", "{second}");

    // An edit that does not parse keeps the last good policy (no rule).
    std::fs::write(&path, "[forbidden]\ntypescript = [\n").unwrap();
    let put = app
        .request(
            Method::PUT,
            &format!("/functions/{id}"),
            Some(json!({ "source": source(3) })),
        )
        .await;
    assert_eq!(put.status, StatusCode::ACCEPTED, "{}", put.body);
    let third = app.wait_for_build(&id, 3).await;
    assert_eq!(third["status"], "READY", "{third}");

    // And putting the rule back refuses the build after.
    std::fs::write(&path, forbidding).unwrap();
    let put = app
        .request(
            Method::PUT,
            &format!("/functions/{id}"),
            Some(json!({ "source": source(4) })),
        )
        .await;
    assert_eq!(put.status, StatusCode::ACCEPTED, "{}", put.body);
    let fourth = app.wait_for_build(&id, 4).await;
    assert!(
        compile_error(&fourth).contains("use crypto.getRandomValues"),
        "{fourth}"
    );
}

/// RUSTSEC-2021-0003 as RustSec's OSV export publishes it (abridged).
const SMALLVEC_ADVISORY: &str = r#"{
  "id": "RUSTSEC-2021-0003",
  "aliases": ["CVE-2021-25900", "GHSA-43w2-9j62-hq99"],
  "summary": "Buffer overflow in SmallVec::insert_many",
  "affected": [{
    "package": {"ecosystem": "crates.io", "name": "smallvec", "purl": "pkg:cargo/smallvec"},
    "ranges": [{"type": "SEMVER", "events": [
      {"introduced": "0.0.0-0"}, {"fixed": "0.6.14"}, {"introduced": "1.0.0"}, {"fixed": "1.6.1"}
    ]}]
  }]
}"#;

/// A handler that uses smallvec.
const SMALLVEC_HANDLER: &str = r#"
use serde_json::Value;
use smallvec::SmallVec;

pub fn handler(input: Value) -> Result<Value, String> {
    let mut small: SmallVec<[u8; 4]> = SmallVec::new();
    small.push(1);
    Ok(serde_json::json!({ "len": small.len(), "input": input }))
}
"#;

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_vulnerable_version_is_refused_with_the_advisory_id(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("osv")).unwrap();
    std::fs::write(
        dir.path().join("osv/RUSTSEC-2021-0003.json"),
        SMALLVEC_ADVISORY,
    )
    .unwrap();
    let deny = format!("{SMALL_POLICY}\n[advisories]\ndb-paths = [\"osv\"]\n");
    let path = write_policy(dir.path(), &deny);
    let app = app_with_policy(pool, &path).await;

    let id = create(
        &app,
        "rust",
        SMALLVEC_HANDLER,
        json!({ "smallvec": "=1.6.0" }),
    )
    .await;
    let function = app.wait_for_build(&id, 1).await;

    let error = compile_error(&function);
    assert!(error.contains("RUSTSEC-2021-0003"), "{error}");
    assert!(error.contains("smallvec 1.6.0"), "{error}");
    assert!(error.contains("fixed in 1.6.1"), "{error}");

    // Under `warn` the same build goes through, the advisory kept with it.
    std::fs::write(
        &path,
        deny.replace("[advisories]", "[advisories]\naction = \"warn\""),
    )
    .unwrap();
    let put = app
        .request(
            Method::PUT,
            &format!("/functions/{id}"),
            Some(json!({
                "source": format!("{SMALLVEC_HANDLER}\n// again\n"),
                "dependencies": { "smallvec": "=1.6.0" },
            })),
        )
        .await;
    assert_eq!(put.status, StatusCode::ACCEPTED, "{}", put.body);
    let function = app.wait_for_build(&id, 2).await;
    assert_eq!(function["status"], "READY", "{function}");
    let version = app.get(&format!("/functions/{id}/versions/2")).await;
    let warnings = version.body["buildWarnings"].to_string();
    assert!(warnings.contains("RUSTSEC-2021-0003"), "{}", version.body);
}
