//! Compiles real sources with the real toolchain in the real sandbox (needs rustc with
//! the wasm32-wasip1 target, bwrap and prlimit; the first run downloads serde from
//! crates.io). One toolchain is prepared per test binary.

use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use super::{CompileFailure, CompileLimits, RustToolchain};

static TOOLCHAIN: OnceCell<RustToolchain> = OnceCell::const_new();

/// Shared across test binaries and runs: `prepare` reuses a finished folder and is safe
/// when several processes build it at once.
pub(super) async fn toolchain() -> &'static RustToolchain {
    TOOLCHAIN
        .get_or_init(|| async {
            let cache_dir = std::env::temp_dir().join("plat-test-rust-deps");
            RustToolchain::prepare(&cache_dir)
                .await
                .expect("preparing the Rust toolchain")
        })
        .await
}

async fn compile(source: &str) -> Result<Vec<u8>, CompileFailure> {
    toolchain()
        .await
        .compile(source, None, &CompileLimits::default())
        .await
}

async fn user_error(source: &str) -> String {
    match compile(source).await {
        Err(CompileFailure::User(message)) => message,
        other => panic!("expected a user compile error, got {other:?}"),
    }
}

/// What must never reach a user: host file content or host paths.
fn assert_no_host_content(message: &str) {
    for leak in [
        "root:",
        "/etc/",
        "/opt/",
        "/usr/",
        "/root",
        "/build",
        "/deps/",
        "/tmp",
        "/proc",
        "/work",
        "plat-test-rust-deps",
    ] {
        assert!(
            !message.contains(leak),
            "message leaks {leak:?}:\n{message}"
        );
    }
}

const HELLO: &str = r#"use serde_json::{json, Value};
pub fn handler(input: Value) -> Result<Value, String> {
    Ok(json!({ "greeting": format!("Hello, {}!", input["name"].as_str().unwrap_or("world")) }))
}
"#;

#[test]
fn the_toolchain_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RustToolchain>();
}

#[tokio::test]
async fn hello_compiles_to_a_wasm_module() {
    let wasm = compile(HELLO).await.expect("hello compiles");

    assert!(wasm.starts_with(b"\0asm"), "not a wasm module");
}

#[tokio::test]
async fn a_typed_handler_with_serde_derive_compiles() {
    let source = r#"use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub struct Input { name: String, times: Option<u32> }

#[derive(Serialize)]
pub struct Output { greeting: String }

pub fn handler(input: Input) -> Result<Output, std::io::Error> {
    let greeting = format!("Hello, {}!", input.name).repeat(input.times.unwrap_or(1) as usize);
    Ok(Output { greeting })
}
"#;

    let wasm = compile(source).await.expect("typed handler compiles");

    assert!(wasm.starts_with(b"\0asm"));
}

#[tokio::test]
async fn a_type_error_points_at_the_users_line_and_column() {
    let source = "use serde_json::Value;\n\npub fn handler(input: Value) -> Result<Value, String> {\n    let count: u32 = \"three\";\n    Ok(input)\n}\n";

    let message = user_error(source).await;

    assert!(message.contains("handler.rs:4:22"), "{message}");
    assert!(message.contains("mismatched types"), "{message}");
    assert!(!message.contains("main.rs"), "{message}");
    assert_no_host_content(&message);
}

#[tokio::test]
async fn a_handler_with_the_wrong_signature_gets_the_friendly_message() {
    let message = user_error("pub fn handler(input: i32) -> i32 { input }\n").await;

    assert!(
        message.contains("pub fn handler(input: T) -> Result<U, E>"),
        "{message}"
    );
    assert!(
        message.contains("expected `handler` to return `Result<_, _>`"),
        "{message}"
    );
    // rustc's plain message only: no snippet of the generated entry point.
    assert!(!message.contains("run(handler::handler)"), "{message}");
    assert_no_host_content(&message);
}

#[tokio::test]
async fn a_private_handler_is_explained_with_its_location() {
    let message =
        user_error("fn handler(input: String) -> Result<String, String> { Ok(input) }\n").await;

    assert!(
        message.contains("pub fn handler(input: T) -> Result<U, E>"),
        "{message}"
    );
    assert!(
        message.contains("is private (see handler.rs:1:1)"),
        "{message}"
    );
}

#[tokio::test]
async fn a_missing_handler_gets_the_friendly_message() {
    let message = user_error("pub fn greet() {}\n").await;

    assert!(
        message.contains("pub fn handler(input: T) -> Result<U, E>"),
        "{message}"
    );
}

#[tokio::test]
async fn an_input_type_without_deserialize_names_the_missing_trait() {
    let source = "pub struct Input { name: String }\npub fn handler(input: Input) -> Result<String, String> { Ok(input.name) }\n";

    let message = user_error(source).await;

    assert!(message.contains("Deserialize"), "{message}");
    assert!(
        message.contains("pub fn handler(input: T) -> Result<U, E>"),
        "{message}"
    );
    assert_no_host_content(&message);
}

#[tokio::test]
async fn an_error_that_involves_serde_code_is_shown_without_host_paths() {
    let source = "pub struct Point { x: i32 }\npub fn handler(raw: String) -> Result<i32, String> {\n    let p: Point = serde_json::from_str(&raw).map_err(|e| e.to_string())?;\n    Ok(p.x)\n}\n";

    let message = user_error(source).await;

    assert!(message.contains("handler.rs:3:20"), "{message}");
    assert!(
        message.contains("/deps-src/cargo/registry/src/"),
        "{message}"
    );
    assert_no_host_content(&message);
}

#[tokio::test]
async fn include_str_of_a_host_file_fails_without_echoing_it() {
    let source = "pub fn handler(_: ()) -> Result<String, String> { Ok(include_str!(\"/etc/passwd\").to_owned()) }\n";

    let message = user_error(source).await;

    assert!(message.contains("handler.rs:1:"), "{message}");
    assert_no_host_content(&message);
}

#[tokio::test]
async fn include_bytes_of_a_host_file_fails_without_echoing_it() {
    let source = "pub fn handler(_: ()) -> Result<usize, String> { Ok(include_bytes!(\"/etc/hostname\").len()) }\n";

    let message = user_error(source).await;

    assert_no_host_content(&message);
}

#[tokio::test]
async fn env_is_empty_at_compile_time() {
    let source =
        "pub fn handler(_: ()) -> Result<String, String> { Ok(env!(\"PATH\").to_owned()) }\n";

    let message = user_error(source).await;

    assert!(
        message.contains("environment variable `PATH` not defined at compile time"),
        "{message}"
    );
    assert_no_host_content(&message);
}

#[tokio::test]
async fn option_env_sees_no_host_variables() {
    // A compile-time assertion: this only compiles if rustc's environment lacks
    // variables that the worker's own environment certainly has (PATH, HOME).
    let source = r#"const _: () = assert!(
    option_env!("PATH").is_none()
        && option_env!("HOME").is_none()
        && option_env!("DATABASE_URL").is_none()
        && option_env!("LD_LIBRARY_PATH").is_none()
);
pub fn handler(_: ()) -> Result<(), String> { Ok(()) }
"#;

    compile(source)
        .await
        .expect("the sandbox's environment is empty");
}

#[tokio::test]
async fn a_path_attribute_pointing_at_a_host_file_is_redacted() {
    let source = "#[path = \"/etc/passwd\"]\nmod secrets;\npub fn handler(_: ()) -> Result<(), String> { Ok(()) }\n";

    let message = user_error(source).await;

    assert!(message.contains("handler.rs:"), "{message}");
    assert_no_host_content(&message);
}

#[tokio::test]
async fn a_path_attribute_reading_a_visible_toolchain_file_does_not_quote_it() {
    // This file exists inside the sandbox, so rustc parses it and would quote its
    // first line in the syntax error.
    let source = "macro_rules! m { ($p:literal) => { #[path = $p] mod x; } }\nm!(\"/opt/rust/lib/rustlib/components\");\npub fn handler(_: ()) -> Result<(), String> { Ok(()) }\n";

    let message = user_error(source).await;

    assert!(!message.contains("clippy"), "{message}");
    assert!(!message.contains("found `-`"), "{message}");
    assert!(!message.contains("components"), "{message}");
    assert_no_host_content(&message);
}

#[tokio::test]
async fn a_crate_outside_the_allowlist_cannot_be_used() {
    for krate in ["syn", "serde_derive", "itoa"] {
        let source = format!(
            "extern crate {krate};\npub fn handler(_: ()) -> Result<(), String> {{ Ok(()) }}\n"
        );

        let message = user_error(&source).await;

        assert!(
            message.contains(&format!("can't find crate for `{krate}`")),
            "{message}"
        );
        assert_no_host_content(&message);
    }
}

#[tokio::test]
async fn unsafe_code_is_rejected() {
    let source =
        "pub fn handler(_: ()) -> Result<u8, String> { Ok(unsafe { *std::ptr::null::<u8>() }) }\n";

    let message = user_error(source).await;

    assert!(message.contains("usage of an `unsafe` block"), "{message}");
}

#[tokio::test]
async fn a_compile_that_runs_too_long_is_stopped_at_the_timeout() {
    let source = r#"#![allow(long_running_const_eval)]
const SPIN: u64 = { let mut i = 0u64; loop { i = i.wrapping_add(1); if i == 0 { break i; } } };
pub fn handler(_: ()) -> Result<u64, String> { Ok(SPIN) }
"#;
    let limits = CompileLimits {
        timeout: Duration::from_secs(3),
        ..CompileLimits::default()
    };
    let result = toolchain().await.compile(source, None, &limits).await;

    match result {
        Err(CompileFailure::User(message)) => {
            assert_eq!(message, "compilation timed out after 3 s")
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn a_compile_over_the_memory_limit_reports_it() {
    // A 256 MiB static: LLVM needs several copies of it and exhausts the 2 GiB limit
    // in about a second (a 1 GiB one is refused by const eval before codegen).
    let source = "pub static BIG: [u8; 1 << 28] = [1; 1 << 28];\npub fn handler(i: usize) -> Result<u8, String> { Ok(BIG[i]) }\n";

    let message = user_error(source).await;

    assert!(
        message.contains("ran out of memory (limit 2048 MiB)"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_compiles_each_get_their_own_module() {
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(async move {
                compile(&format!("pub fn handler(_: ()) -> Result<&'static str, String> {{ Ok(\"function number {i}\") }}\n")).await
            })
        })
        .collect();

    for (i, task) in tasks.into_iter().enumerate() {
        let wasm = task.await.expect("task").expect("compiles");
        let marker = format!("function number {i}");
        assert!(
            wasm.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "module {i} lacks its own string"
        );
    }
}

/// Prints the numbers quoted in the report. Slow (a cold build of the allowlist in a
/// fresh cache folder), so run by hand:
/// `cargo test -p plat-worker-compiler measures -- --ignored --nocapture`
#[tokio::test]
#[ignore = "slow: cold-builds the dependency allowlist"]
async fn measures_prepare_and_compile_times() {
    let cache = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let toolchain = RustToolchain::prepare(cache.path()).await.expect("prepare");
    let cold = started.elapsed();
    let started = Instant::now();
    RustToolchain::prepare(cache.path())
        .await
        .expect("prepare again");
    let reuse = started.elapsed();

    let mut hello = Vec::new();
    let mut error = Vec::new();
    for i in 0..10 {
        // A different function each time, as in production (no output cache).
        let source = HELLO.replace("Hello", &format!("Hello {i}"));
        let started = Instant::now();
        toolchain
            .compile(&source, None, &CompileLimits::default())
            .await
            .expect("hello");
        hello.push(started.elapsed());
        let started = Instant::now();
        let _ = toolchain
            .compile(
                &format!("pub fn handler(_: ()) -> Result<u32, String> {{ Ok(\"{i}\") }}"),
                None,
                &CompileLimits::default(),
            )
            .await;
        error.push(started.elapsed());
    }
    hello.sort();
    error.sort();
    println!(
        "cold prepare: {cold:?}; prepare reusing the cache (incl. self-test compile): {reuse:?}"
    );
    println!(
        "warm hello compile: median {:?}, min {:?}, max {:?}",
        hello[5], hello[0], hello[9]
    );
    println!(
        "type error returned: median {:?}, min {:?}, max {:?}",
        error[5], error[0], error[9]
    );
}
