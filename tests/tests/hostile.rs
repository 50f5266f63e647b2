//! Hostile functions and hostile requests, through the real API, workers,
//! rustc sandbox and wasmtime. Each case asserts the exact outcome a user sees:
//! the execution's status and error type, the build's `compileError`, or the
//! API's problem response; and that nothing of the host leaks into any of them.
//!
//! Run-time cases share one source ([`HOSTILE`]) whose behaviour is picked by
//! `input.case`, so a test compiles one module rather than one per case.

use plat_tests::{assert_failed_with, compiler_config, TestApp, Workers, HELLO, MIGRATOR};
use plat_worker_compiler::CompilerConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

/// One function, many misbehaviours: `{"case": "<name>"}` picks one.
const HOSTILE: &str = r#"
use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::Write;
use serde_json::{json, Value};

fn depth(n: u64) -> u64 {
    if black_box(n) == u64::MAX {
        return 0;
    }
    1 + depth(black_box(n + 1))
}

/// `{"ok": value}` or `{"error": message}`, so the caller sees what happened.
fn report<T: serde::Serialize, E: std::fmt::Display>(result: Result<T, E>) -> Value {
    match result {
        Ok(value) => json!({ "ok": value }),
        Err(error) => json!({ "error": error.to_string() }),
    }
}

fn list(dir: &str) -> Value {
    report(std::fs::read_dir(dir).map(|entries| {
        entries.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>()
    }))
}

pub fn handler(input: Value) -> Result<Value, String> {
    match input["case"].as_str().unwrap_or_default() {
        "ok" => Ok(json!("still here")),
        "stack_overflow" => Ok(json!(depth(0))),
        "panic" => panic!("boom"),
        "exit" => std::process::exit(3),
        "unreachable" => std::arch::wasm32::unreachable(),
        "divide_by_zero" => Ok(json!(black_box(1i32) / black_box(0i32))),
        "huge_output" => Ok(json!("x".repeat(2 << 20))),
        "stdout_noise" => {
            println!("debugging on stdout");
            Ok(json!({ "ok": true }))
        }
        "log_flood" => {
            let line = "y".repeat(95);
            for i in 0..2048 {
                eprintln!("{i:04} {line}");
            }
            Ok(json!("done"))
        }
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            Ok(json!("woke up"))
        }
        "spin" => {
            let mut i: u64 = 0;
            loop {
                i = black_box(i.wrapping_add(1));
            }
        }
        "filesystem" => Ok(json!({
            "readRoot": list("/"),
            "readHere": list("."),
            "readPasswd": report(std::fs::read_to_string("/etc/passwd")),
            "readProc": report(std::fs::read_to_string("/proc/self/environ")),
            "write": report(std::fs::write("/tmp/plat-hostile", b"x")),
        })),
        "network" => Ok(json!({
            "tcp": report(std::net::TcpStream::connect("127.0.0.1:5432").map(|_| "connected")),
            "udp": report(std::net::UdpSocket::bind("0.0.0.0:0").map(|_| "bound")),
            "dns": report(std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 5432))
                .map(|addrs| addrs.map(|a| a.to_string()).collect::<Vec<_>>())),
        })),
        "environment" => Ok(json!({
            "vars": std::env::vars().collect::<BTreeMap<String, String>>(),
            "args": std::env::args().collect::<Vec<_>>(),
        })),
        "compile_time_environment" => Ok(json!({
            "PATH": option_env!("PATH"),
            "HOME": option_env!("HOME"),
            "DATABASE_URL": option_env!("DATABASE_URL"),
            "RUSTUP_HOME": option_env!("RUSTUP_HOME"),
        })),
        "nul_in_logs" => {
            eprintln!("before\0after");
            Ok(json!("logged a NUL"))
        }
        "nul_in_output" => Ok(json!({ "text": "before\u{0}after" })),
        "nul_in_error" => Err("before\0after".to_owned()),
        "number_out_of_range" => {
            // Valid JSON (the grammar has no range), but no database number holds it.
            let mut out = std::io::stdout();
            out.write_all(b"1e999999").and_then(|()| out.flush()).map_err(|e| e.to_string())?;
            std::process::exit(0)
        }
        "deep_output" => {
            // Valid JSON, 200 000 levels deep: deeper than jsonb can parse.
            let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
            let mut out = std::io::stdout();
            out.write_all(deep.as_bytes()).and_then(|()| out.flush()).map_err(|e| e.to_string())?;
            std::process::exit(0)
        }
        other => Err(format!("unknown case {other:?}")),
    }
}
"#;

/// Where `needle` starts in [`HOSTILE`], as rustc reports it (1-based line:column).
fn location_in_hostile(needle: &str) -> String {
    let (line, text) = HOSTILE
        .lines()
        .enumerate()
        .find(|(_, text)| text.contains(needle))
        .expect("needle in HOSTILE");
    format!("{}:{}", line + 1, text.find(needle).unwrap() + 1)
}

// ---------------------------------------------------------------------------
// Run time
// ---------------------------------------------------------------------------

#[sqlx::test(migrator = "MIGRATOR")]
async fn crashing_functions_fail_with_the_matching_error_and_the_worker_keeps_serving(
    pool: PgPool,
) {
    let app = TestApp::spawn(pool).await;
    let hostile = app.ready_function("hostile", HOSTILE, json!({})).await;
    let hello = app.ready_function("hello", HELLO, json!({})).await;

    let stack_overflow = app.run_case(&hostile, "stack_overflow").await;
    let panic = app.run_case(&hostile, "panic").await;
    let exit = app.run_case(&hostile, "exit").await;
    let unreachable = app.run_case(&hostile, "unreachable").await;
    let divide_by_zero = app.run_case(&hostile, "divide_by_zero").await;
    let same_module_after = app.run_case(&hostile, "ok").await;
    let hello_after = app.execute(&hello, json!({ "name": "Ada" }), 30).await;

    assert_failed_with(&stack_overflow, "TRAP", "stack overflow");
    assert_failed_with(
        &panic,
        "PANIC",
        &format!(
            "panicked at handler.rs:{}: boom",
            location_in_hostile("panic!(\"boom\")")
        ),
    );
    assert_failed_with(&exit, "EXIT", "function exited with code 3");
    assert_failed_with(
        &unreachable,
        "TRAP",
        "wasm `unreachable` instruction executed",
    );
    // Rust checks integer division itself: dividing by zero is a panic in the
    // handler's code, never wasm's `i32.div_s` trap.
    assert_failed_with(
        &divide_by_zero,
        "PANIC",
        &format!(
            "panicked at handler.rs:{}: attempt to divide by zero",
            location_in_hostile("black_box(1i32) / black_box(0i32)")
        ),
    );
    for execution in [
        &stack_overflow,
        &panic,
        &exit,
        &unreachable,
        &divide_by_zero,
    ] {
        assert_eq!(
            execution["attempts"], 1,
            "a function's own failure is not retried: {execution}"
        );
    }
    assert_eq!(
        same_module_after["status"], "SUCCEEDED",
        "{same_module_after}"
    );
    assert_eq!(same_module_after["output"], "still here");
    assert_eq!(
        hello_after.body["status"], "SUCCEEDED",
        "{}",
        hello_after.body
    );
    assert_eq!(
        hello_after.body["output"],
        json!({ "greeting": "Hello, Ada!" })
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn oversized_output_stray_stdout_and_flooded_logs_are_contained(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let hostile = app.ready_function("hostile", HOSTILE, json!({})).await;

    let huge_output = app.run_case(&hostile, "huge_output").await;
    let stdout_noise = app.run_case(&hostile, "stdout_noise").await;
    let log_flood = app.run_case(&hostile, "log_flood").await;

    assert_failed_with(
        &huge_output,
        "INVALID_OUTPUT",
        "output exceeds 1048576 bytes",
    );
    // The module writes its output after the stray line: stdout is two things.
    assert_failed_with(
        &stdout_noise,
        "INVALID_OUTPUT",
        "function output is not valid JSON: expected value at line 1 column 1 (hint: print logs with eprintln!, not println!)",
    );
    assert_eq!(log_flood["status"], "SUCCEEDED", "{log_flood}");
    assert_eq!(log_flood["output"], "done");
    assert_eq!(log_flood["logsTruncated"], true);
    let logs = log_flood["logs"].as_str().unwrap();
    let marker = "\n[logs truncated at 65536 bytes]";
    assert!(
        logs.starts_with(&format!("0000 {}\n0001 ", "y".repeat(95))),
        "{}",
        &logs[..200]
    );
    assert!(logs.ends_with(marker), "{}", &logs[logs.len() - 200..]);
    assert!(
        logs.len() <= 65536 + marker.len(),
        "{} bytes of logs",
        logs.len()
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_function_sleeping_for_an_hour_is_stopped_at_its_timeout(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sleeper = app
        .ready_function("sleeper", HOSTILE, json!({ "timeoutMs": 500 }))
        .await;

    let sleep = app.run_case(&sleeper, "sleep").await;

    assert_failed_with(&sleep, "TIMEOUT", "execution exceeded the 500 ms timeout");
    let duration = sleep["durationMs"].as_i64().unwrap();
    assert!(
        duration >= 500,
        "stopped after {duration} ms, before its deadline"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_function_cannot_reach_files_the_network_or_the_hosts_environment(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let config = json!({ "environmentVariables": { "GREETING": "hi" } });
    let hostile = app.ready_function("hostile", HOSTILE, config).await;

    let filesystem = app.run_case(&hostile, "filesystem").await;
    let network = app.run_case(&hostile, "network").await;
    let environment = app.run_case(&hostile, "environment").await;
    let compile_time_environment = app.run_case(&hostile, "compile_time_environment").await;

    let refused = |execution: &Value, probe: &str| {
        let outcome = &execution["output"][probe];
        assert!(
            outcome["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{probe} was allowed: {outcome}"
        );
        assert_eq!(outcome.get("ok"), None, "{probe} was allowed: {outcome}");
    };
    assert_eq!(filesystem["status"], "SUCCEEDED", "{filesystem}");
    for probe in ["readRoot", "readHere", "readPasswd", "readProc", "write"] {
        refused(&filesystem, probe);
    }
    assert!(!filesystem.to_string().contains("root:"), "{filesystem}");
    assert_eq!(network["status"], "SUCCEEDED", "{network}");
    for probe in ["tcp", "udp", "dns"] {
        refused(&network, probe);
    }
    assert_eq!(
        environment["output"],
        json!({ "vars": { "GREETING": "hi" }, "args": ["handler"] }),
        "{environment}"
    );
    // option_env! reads rustc's environment, which the sandbox empties.
    assert_eq!(
        compile_time_environment["output"],
        json!({ "PATH": null, "HOME": null, "DATABASE_URL": null, "RUSTUP_HOME": null }),
        "{compile_time_environment}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_well_behaved_function_keeps_running_while_a_hostile_one_spins(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let spinner = app
        .ready_function("spinner", HOSTILE, json!({ "timeoutMs": 3000 }))
        .await;
    let hello = app.ready_function("hello", HELLO, json!({})).await;
    let spinning = app.execute(&spinner, json!({ "case": "spin" }), 0).await;
    let spinning_id = spinning.body["id"].as_str().unwrap().to_owned();
    app.wait_until(plat_common::notify::EXECUTION_JOBS, || async {
        let execution = app.get(&format!("/executions/{spinning_id}")).await.body;
        (execution["status"] == "RUNNING").then_some(())
    })
    .await;

    let greeted = app.execute(&hello, json!({ "name": "Bo" }), 30).await;
    let spun = app.wait_for_execution(&spinning_id).await;
    let greeted_again = app.execute(&hello, json!({ "name": "Cy" }), 30).await;

    assert_eq!(greeted.body["status"], "SUCCEEDED", "{}", greeted.body);
    assert_eq!(greeted.body["output"], json!({ "greeting": "Hello, Bo!" }));
    assert_failed_with(&spun, "TIMEOUT", "execution exceeded the 3000 ms timeout");
    let (hello_first,): (bool,) = sqlx::query_as(
        "select (select finished_at from executions where id = $1::uuid) < (select finished_at from executions where id = $2::uuid)",
    )
    .bind(greeted.body["id"].as_str().unwrap())
    .bind(&spinning_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(
        hello_first,
        "hello waited for the spinner instead of running beside it"
    );
    assert_eq!(
        greeted_again.body["status"], "SUCCEEDED",
        "{}",
        greeted_again.body
    );
}

// PostgreSQL's `text` cannot hold NUL, and `jsonb` refuses `\u0000` and
// numbers beyond its range: what a function is free to produce must still be
// recorded once as its outcome, not lost with the write (which re-ran the
// function until its attempts ran out and reported WORKER_LOST).
#[sqlx::test(migrator = "MIGRATOR")]
async fn output_logs_and_errors_the_database_cannot_hold_are_still_recorded(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let hostile = app.ready_function("hostile", HOSTILE, json!({})).await;

    let nul_in_logs = app.run_case(&hostile, "nul_in_logs").await;
    let nul_in_output = app.run_case(&hostile, "nul_in_output").await;
    let nul_in_error = app.run_case(&hostile, "nul_in_error").await;
    let number_out_of_range = app.run_case(&hostile, "number_out_of_range").await;

    assert_eq!(nul_in_logs["status"], "SUCCEEDED", "{nul_in_logs}");
    assert_eq!(nul_in_logs["output"], "logged a NUL");
    assert_eq!(nul_in_logs["logs"], "before\u{FFFD}after\n");
    assert_failed_with(
        &nul_in_output,
        "INVALID_OUTPUT",
        "the output is valid JSON but cannot be stored: unsupported Unicode escape sequence",
    );
    assert_failed_with(&nul_in_error, "HANDLER_ERROR", "before\u{FFFD}after");
    assert_failed_with(
        &number_out_of_range,
        "INVALID_OUTPUT",
        "the output is valid JSON but cannot be stored: value overflows numeric format",
    );
    for execution in [
        &nul_in_logs,
        &nul_in_output,
        &nul_in_error,
        &number_out_of_range,
    ] {
        assert_eq!(
            execution["attempts"], 1,
            "recorded on the first attempt: {execution}"
        );
    }
}

// An output nested deeper than PostgreSQL's jsonb parser can go failed the
// whole result batch (SQLSTATE 54001), so every run in it was lost and run
// again when its lease expired, forever: it is the function's result instead.
#[sqlx::test(migrator = "MIGRATOR")]
async fn an_output_nested_200_000_deep_fails_as_invalid_output_and_is_not_run_again(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let hostile = app.ready_function("hostile", HOSTILE, json!({})).await;

    let deep = app.run_case(&hostile, "deep_output").await;
    let after = app.run_case(&hostile, "ok").await;

    assert_failed_with(
        &deep,
        "INVALID_OUTPUT",
        "function output is nested too deeply: at most 128 levels of arrays and objects",
    );
    assert_eq!(deep["attempts"], 1, "{deep}");
    assert_eq!(after["output"], "still here", "{after}");
}

// ---------------------------------------------------------------------------
// Compile time
// ---------------------------------------------------------------------------

/// Registers `source`, waits for its build, asserts it FAILED without any
/// host content in the function's JSON, and returns its `compileError`.
async fn failed_build(app: &TestApp, name: &str, source: &str) -> String {
    let id = app.create_function(name, source, json!({})).await;
    let function = app.wait_for_build(&id, 1).await;
    assert_eq!(function["status"], "FAILED", "{function}");
    assert_eq!(function["activeVersion"], Value::Null, "{function}");
    assert_no_host_content(&function);
    let error = function["compileError"]
        .as_str()
        .expect("a compileError")
        .to_owned();
    assert!(!error.is_empty());
    error
}

// Every executor loads and caches each module it runs, and the database
// keeps one per version: the operator caps how large a build may be.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_build_over_the_module_size_limit_fails_and_names_the_limit(pool: PgPool) {
    let mut app = TestApp::spawn_with(pool, Workers::NONE).await;
    app.start_compiler_with(CompilerConfig {
        max_module_bytes: 64,
        ..compiler_config()
    })
    .await;

    let rust = app.create_function("big-rust", HELLO, json!({})).await;
    let typescript = app
        .create_function_in(
            "typescript",
            "big-typescript",
            "export default (input: { name: string }) => ({ greeting: `Hello, ${input.name}!` });\n",
            json!({}),
        )
        .await;
    let rust = app.wait_for_build(&rust, 1).await;
    let typescript = app.wait_for_build(&typescript, 1).await;

    for function in [&rust, &typescript] {
        assert_eq!(function["status"], "FAILED", "{function}");
        let error = function["compileError"].as_str().unwrap();
        assert!(error.starts_with("the built module is "), "{error}");
        assert!(
            error.ends_with(
                " bytes, over the limit of 64 bytes on a module's size (PLAT_MAX_MODULE_BYTES)"
            ),
            "{error}"
        );
    }
}

/// Host paths and file contents that must never reach a user.
fn assert_no_host_content(function: &Value) {
    let text = function.to_string();
    for leak in [
        "root:x:0:0",
        "root:",
        "/root",
        "/usr/lib",
        "/opt/rust",
        "/build/",
        "/deps/",
        "/tmp/",
        "/.cargo/",
        "/.rustup/",
        "plat-test-cache",
    ] {
        assert!(!text.contains(leak), "leaks {leak:?}: {text}");
    }
    // The checkout the tests run in, wherever that is on this machine.
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let workspace = std::path::Path::new(workspace).canonicalize().unwrap();
    let workspace = workspace.to_string_lossy();
    assert!(
        !text.contains(workspace.as_ref()),
        "leaks the checkout's path: {text}"
    );
    let target = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| format!("{}/../target", env!("CARGO_MANIFEST_DIR")));
    let target = std::fs::canonicalize(&target)
        .map(|p| p.display().to_string())
        .unwrap_or(target);
    assert!(
        !text.contains(&target),
        "leaks the target folder {target}: {text}"
    );
    if let Ok(hostname) = std::fs::read_to_string("/etc/hostname") {
        let hostname = hostname.trim();
        let mut words = text.split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '.'));
        assert!(
            hostname.is_empty() || !words.any(|w| w == hostname),
            "leaks the hostname {hostname}: {text}"
        );
    }
}

/// The redacted report for an error that involves a file outside handler.rs.
const REDACTED: &str = "error: this code refers to a file outside handler.rs";
const DETAILS_HIDDEN: &str =
    "  = note: details hidden: a function can only use its handler.rs and the allowed crates (serde, serde_json)";

const HANDLER: &str =
    "pub fn handler(_: serde_json::Value) -> Result<String, String> { Ok(String::new()) }\n";

#[sqlx::test(migrator = "MIGRATOR")]
async fn include_str_of_the_hosts_passwd_fails_without_quoting_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let source = "pub fn handler(_: serde_json::Value) -> Result<String, String> {\n    Ok(include_str!(\"/etc/passwd\").to_owned())\n}\n";

    let error = failed_build(&app, "include-str", source).await;

    assert_eq!(
        error,
        format!("{REDACTED}\n --> handler.rs:2:8\n{DETAILS_HIDDEN}")
    );
    assert!(!error.contains("root:"), "{error}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn include_bytes_of_the_hosts_hostname_fails_without_quoting_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let source = "pub fn handler(_: serde_json::Value) -> Result<usize, String> {\n    Ok(include_bytes!(\"/etc/hostname\").len())\n}\n";

    let error = failed_build(&app, "include-bytes", source).await;

    assert_eq!(
        error,
        format!("{REDACTED}\n --> handler.rs:2:8\n{DETAILS_HIDDEN}")
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn include_bytes_of_an_endless_device_fails_quickly_at_the_memory_limit(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let source = "pub fn handler(_: serde_json::Value) -> Result<usize, String> {\n    Ok(include_bytes!(\"/dev/zero\").len())\n}\n";
    let error = failed_build(&app, "endless", source).await;

    // rustc's read fails once the compile's address-space limit refuses more
    // memory; its message names the file, so only the location is shown.
    assert_eq!(
        error,
        format!("{REDACTED}\n --> handler.rs:2:8\n{DETAILS_HIDDEN}")
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn include_str_finds_no_proc_and_no_way_out_of_the_job_folder(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let mountinfo = format!("const M: &str = include_str!(\"/proc/self/mountinfo\");\n{HANDLER}");
    let escape = format!("const P: &str = include_str!(\"../../../../../etc/passwd\");\n{HANDLER}");

    let mountinfo = failed_build(&app, "mountinfo", &mountinfo).await;
    let escape = failed_build(&app, "escape", &escape).await;

    assert_eq!(
        mountinfo,
        format!("{REDACTED}\n --> handler.rs:1:17\n{DETAILS_HIDDEN}")
    );
    assert_eq!(
        escape,
        format!("{REDACTED}\n --> handler.rs:1:17\n{DETAILS_HIDDEN}")
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn env_of_the_hosts_database_url_is_undefined_at_compile_time(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let source = "pub fn handler(_: serde_json::Value) -> Result<String, String> {\n    Ok(env!(\"DATABASE_URL\").to_owned())\n}\n";

    let error = failed_build(&app, "env", source).await;

    assert!(
        error.contains("environment variable `DATABASE_URL` not defined at compile time"),
        "{error}"
    );
    assert!(error.contains("handler.rs:2:8"), "{error}");
    assert!(!error.contains("postgres"), "{error}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_path_attribute_naming_a_host_file_fails_without_quoting_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let source = format!("#[path = \"/etc/passwd\"]\nmod x;\n{HANDLER}");

    let error = failed_build(&app, "path-attr", &source).await;

    assert_eq!(
        error,
        format!("{REDACTED}\n --> handler.rs:2:1\n{DETAILS_HIDDEN}")
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn crates_outside_the_allowlist_cannot_be_linked(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let source = format!("extern crate libc;\nextern crate tokio;\n{HANDLER}");

    let error = failed_build(&app, "extern-crates", &source).await;

    // libc is in the sysroot (std depends on it), where stable rustc refuses it.
    assert!(
        error.contains("use of unstable library feature `rustc_private`"),
        "{error}"
    );
    assert!(error.contains("--> handler.rs:1:1"), "{error}");
    assert!(error.contains("can't find crate for `tokio`"), "{error}");
    assert!(error.contains("--> handler.rs:2:1"), "{error}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_procedural_macro_cannot_be_defined(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let source = format!(
        "extern crate proc_macro;\n#[proc_macro]\npub fn evil(input: proc_macro::TokenStream) -> proc_macro::TokenStream {{ input }}\n{HANDLER}"
    );

    let error = failed_build(&app, "proc-macro", &source).await;

    // `extern crate proc_macro;` alone compiles (the crate is in every sysroot);
    // what must fail is code that would run inside the compiler.
    assert!(error.contains("the `#[proc_macro]` attribute is only usable with crates of the `proc-macro` crate type"), "{error}");
    assert!(error.contains("--> handler.rs:2:1"), "{error}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn unsafe_code_is_refused_even_when_the_source_allows_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let plain = "pub fn handler(_: serde_json::Value) -> Result<u8, String> {\n    Ok(unsafe { *std::ptr::null::<u8>() })\n}\n";
    let allowed = format!("#![allow(unsafe_code)]\n{plain}");
    let exported = format!("#[no_mangle]\npub extern \"C\" fn _start() {{}}\n{HANDLER}");
    let ids = [
        app.create_function("unsafe-plain", plain, json!({})).await,
        app.create_function("unsafe-allowed", &allowed, json!({}))
            .await,
        app.create_function("unsafe-exported", &exported, json!({}))
            .await,
    ];

    let mut errors = Vec::new();
    for id in &ids {
        let function = app.wait_for_build(id, 1).await;
        assert_eq!(function["status"], "FAILED", "{function}");
        assert_no_host_content(&function);
        errors.push(function["compileError"].as_str().unwrap().to_owned());
    }

    assert!(
        errors[0].contains("usage of an `unsafe` block"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].contains("allow(unsafe_code) incompatible with previous forbid"),
        "{}",
        errors[1]
    );
    assert!(
        errors[2].contains("declaration of a `no_mangle` function"),
        "{}",
        errors[2]
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_macro_recursion_bomb_fails_fast_at_the_recursion_limit(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let source = format!("macro_rules! r {{ () => {{ r!(); r!(); }} }}\nr!();\n{HANDLER}");
    let error = failed_build(&app, "macro-bomb", &source).await;

    assert!(
        error.contains("recursion limit reached while expanding `r!`"),
        "{error}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_endless_constant_fails_at_the_const_eval_limit(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let source = format!("const SPIN: u64 = {{ let mut i = 1u64; while i != 0 {{ i = i.wrapping_mul(3); }} i }};\n{HANDLER}");
    let error = failed_build(&app, "const-spin", &source).await;

    assert!(
        error.contains("constant evaluation is taking a long time"),
        "{error}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_flood_of_compile_errors_is_capped_and_counted(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    // Each `0` doubles the expansion: thousands of type errors from two lines.
    let source = format!(
        "macro_rules! d {{ (0 $($r:tt)*) => {{ d!($($r)*); d!($($r)*); }}; () => {{ const _: u8 = \"x\"; }}; }}\nd!(0 0 0 0 0 0 0 0 0 0 0 0);\n{HANDLER}"
    );

    let error = failed_build(&app, "error-flood", &source).await;

    assert!(
        error.starts_with("error[E0308]: mismatched types\n --> handler.rs:1:"),
        "{}",
        &error[..200]
    );
    assert!(error.len() <= 16 * 1024 + 100, "{} bytes", error.len());
    let tail = &error[error.len() - 60..];
    assert!(
        tail.contains("... and ") && tail.ends_with(" more errors not shown"),
        "{tail}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_source_nested_too_deep_for_rustc_fails_as_a_compiler_crash(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let parens = 30_000;
    let source = format!(
        "pub fn handler(_: serde_json::Value) -> Result<u32, String> {{ Ok({}1{}) }}\n",
        "(".repeat(parens),
        ")".repeat(parens)
    );

    let error = failed_build(&app, "parens", &source).await;

    // rustc's parser overflows its stack; the worker reports it and lives on.
    assert!(
        error.starts_with("the Rust compiler crashed on this code"),
        "{error}"
    );
    let next = app
        .ready_function("after-the-crash", HELLO, json!({}))
        .await;
    assert!(!next.is_empty());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_nul_in_a_redacted_compile_error_is_stored_and_shown_as_a_symbol(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    // The note names a path, so the diagnostic is redacted to rustc's plain
    // message, which (unlike its rendered text) keeps the NUL raw.
    let source = "#[diagnostic::on_unimplemented(message = \"before\\0after\", note = \"see /etc/x\")]\npub trait Evil {}\nfn need<T: Evil>() {}\n\
         pub fn handler(_: serde_json::Value) -> Result<String, String> { need::<u8>(); Ok(String::new()) }\n".to_string();

    let error = failed_build(&app, "nul-error", &source).await;

    assert_eq!(
        error,
        "error: before\u{2400}after\n --> handler.rs:4:73\n".to_owned() + DETAILS_HIDDEN
    );
}

// ---------------------------------------------------------------------------
// Hostile requests
// ---------------------------------------------------------------------------

fn nested_arrays(depth: usize) -> Vec<u8> {
    let mut body = "[".repeat(depth);
    body.push_str(&"]".repeat(depth));
    body.into_bytes()
}

/// Sends a raw execution body; returns the status, content type and body
/// text (a deeply nested reply would not parse as a harness `Reply`).
async fn execute_raw(app: &TestApp, id: &str, body: Vec<u8>) -> (StatusCode, String, String) {
    let response = app
        .client
        .post(format!("{}/functions/{id}/execute?wait=0", app.base_url))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request sent");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (
        response.status(),
        content_type,
        response.text().await.expect("a body"),
    )
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_execution_input_that_is_not_utf8_is_a_bad_request(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::COMPILER_ONLY).await;
    let id = app.ready_function("inputs", HELLO, json!({})).await;

    let reply = app
        .request_raw(
            Method::POST,
            &format!("/functions/{id}/execute?wait=0"),
            "application/json",
            b"\"\xff\xfe\"".to_vec(),
        )
        .await;

    assert_eq!(
        reply.problem(StatusCode::BAD_REQUEST),
        "the input is not UTF-8 text"
    );
    assert_eq!(
        app.count("executions").await,
        0,
        "refused requests queue nothing"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_deeply_nested_execution_input_is_a_bad_request(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::COMPILER_ONLY).await;
    let id = app.ready_function("inputs", HELLO, json!({})).await;

    // 32,000 levels fit in the harness's 64 KiB input limit.
    let mut replies = Vec::new();
    for depth in [10_000, 32_000] {
        replies.push((depth, execute_raw(&app, &id, nested_arrays(depth)).await));
    }

    for (depth, (status, content_type, body)) in &replies {
        let shown: String = body
            .chars()
            .filter(|c| !matches!(c, '[' | ']'))
            .take(300)
            .collect();
        assert_eq!(
            *status,
            StatusCode::BAD_REQUEST,
            "depth {depth}: {shown}; all: {:?}",
            replies.iter().map(|r| (r.0, r.1 .0)).collect::<Vec<_>>()
        );
        assert_eq!(content_type, "application/problem+json");
        let detail = serde_json::from_str::<Value>(body).unwrap()["detail"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(detail.contains("nested too deeply"), "{detail}");
    }
    assert_eq!(
        app.count("executions").await,
        0,
        "refused requests queue nothing"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn inputs_the_database_cannot_store_are_refused_not_a_server_error(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::COMPILER_ONLY).await;
    let id = app.ready_function("inputs", HELLO, json!({})).await;
    let path = format!("/functions/{id}/execute?wait=0");

    let nul = app
        .request_raw(
            Method::POST,
            &path,
            "application/json",
            br#"{"name": "a\u0000b"}"#.to_vec(),
        )
        .await;
    let out_of_range = app
        .request_raw(
            Method::POST,
            &path,
            "application/json",
            b"1e999999".to_vec(),
        )
        .await;

    assert_eq!(
        nul.problem(StatusCode::BAD_REQUEST),
        "the input is valid JSON but cannot be stored: unsupported Unicode escape sequence"
    );
    assert_eq!(
        out_of_range.problem(StatusCode::BAD_REQUEST),
        "the input is valid JSON but cannot be stored: value overflows numeric format"
    );
    assert_eq!(
        app.count("executions").await,
        0,
        "refused requests queue nothing"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_function_body_nested_ten_thousand_deep_is_refused(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let nested = String::from_utf8(nested_arrays(10_000)).unwrap();
    let in_unknown_field =
        format!(r#"{{"name": "deep", "language": "rust", "source": "x", "extra": {nested}}}"#);
    let in_known_field =
        format!(r#"{{"name": "deep", "language": "rust", "source": "x", "tags": {nested}}}"#);

    let unknown = app
        .request_raw(
            Method::POST,
            "/functions",
            "application/json",
            in_unknown_field.into_bytes(),
        )
        .await;
    let known = app
        .request_raw(
            Method::POST,
            "/functions",
            "application/json",
            in_known_field.into_bytes(),
        )
        .await;

    assert!(
        unknown
            .problem(StatusCode::BAD_REQUEST)
            .contains("unknown field `extra`"),
        "{}",
        unknown.body
    );
    assert!(
        known.problem(StatusCode::BAD_REQUEST).contains("tags"),
        "{}",
        known.body
    );
    assert_eq!(app.get("/functions").await.body["items"], json!([]));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn nul_characters_in_a_functions_fields_are_refused(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let post = |extra: Value| {
        let mut body = json!({ "name": "nul", "language": "rust", "source": HANDLER });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        app.request(Method::POST, "/functions", Some(body))
    };

    let source = post(json!({ "source": format!("{HANDLER}// \u{0}") })).await;
    let description = post(json!({ "description": "a\u{0}b" })).await;
    let tag = post(json!({ "tags": ["a\u{0}b"] })).await;
    let variable =
        post(json!({ "executionConfig": { "environmentVariables": { "A": "a\u{0}b" } } })).await;

    assert_eq!(
        source.problem(StatusCode::BAD_REQUEST),
        "`source` contains a NUL character"
    );
    assert_eq!(
        description.problem(StatusCode::BAD_REQUEST),
        "`description` contains a NUL character"
    );
    assert!(
        tag.problem(StatusCode::BAD_REQUEST).contains("without NUL"),
        "{}",
        tag.body
    );
    assert_eq!(
        variable.problem(StatusCode::BAD_REQUEST),
        "environment variable A contains a NUL character"
    );
}
