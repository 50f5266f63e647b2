//! Real crates from crates.io, built in the real sandbox, run in wasmtime.

use plat_common::dependencies::Dependencies;
use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use super::super::tests::toolchain;
use super::super::{CompileFailure, CompileLimits, Resolution};

const REGEX_HANDLER: &str = r#"use serde::Deserialize;
#[derive(Deserialize)]
pub struct Input { text: String }
pub fn handler(input: Input) -> Result<serde_json::Value, String> {
    let re = regex::Regex::new(r"[0-9]+").map_err(|e| e.to_string())?;
    let numbers: Vec<&str> = re.find_iter(&input.text).map(|m| m.as_str()).collect();
    Ok(serde_json::json!({ "numbers": numbers }))
}
"#;

fn deps(json: serde_json::Value) -> Dependencies {
    serde_json::from_value(json).expect("valid dependencies")
}

async fn resolve(dependencies: &Dependencies, locked: Option<&str>) -> Resolution {
    toolchain()
        .await
        .resolve(dependencies, locked, &CompileLimits::default())
        .await
        .expect("the dependencies resolve")
}

async fn compile(source: &str, resolution: &Resolution) -> Vec<u8> {
    toolchain()
        .await
        .compile(source, Some(resolution), &CompileLimits::default())
        .await
        .expect("the handler compiles against its dependencies")
}

async fn resolution_error(dependencies: serde_json::Value) -> String {
    match toolchain()
        .await
        .resolve(&deps(dependencies), None, &CompileLimits::default())
        .await
    {
        Err(CompileFailure::User(message)) => message,
        other => panic!("expected a user error, got {other:?}"),
    }
}

/// Runs a function module as the executor does (WASI preview 1, JSON on
/// stdin): its exit code and stdout. On a blocking thread: wasmtime-wasi's
/// synchronous calls start a runtime of their own.
async fn run_module(wasm: &[u8], input: &str) -> (i32, String) {
    let (wasm, input) = (wasm.to_vec(), input.to_owned());
    tokio::task::spawn_blocking(move || run_blocking(&wasm, &input))
        .await
        .expect("the module run does not panic")
}

fn run_blocking(wasm: &[u8], input: &str) -> (i32, String) {
    let engine = Engine::default();
    let module = Module::from_binary(&engine, wasm).expect("a valid module");
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    p1::add_to_linker_sync(&mut linker, |wasi| wasi).unwrap();
    let stdout = MemoryOutputPipe::new(1 << 20);
    let wasi = WasiCtxBuilder::new()
        .stdin(MemoryInputPipe::new(input.to_owned()))
        .stdout(stdout.clone())
        .build_p1();
    let mut store = Store::new(&engine, wasi);
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .unwrap();
    let code = match start.call(&mut store, ()) {
        Ok(()) => 0,
        Err(error) => error
            .downcast_ref::<I32Exit>()
            .map(|exit| exit.0)
            .unwrap_or_else(|| panic!("the module trapped: {error:?}")),
    };
    (
        code,
        String::from_utf8_lossy(&stdout.contents()).into_owned(),
    )
}

#[tokio::test]
async fn a_handler_using_regex_builds_and_runs() {
    let resolution = resolve(&deps(serde_json::json!({"regex": "1"})), None).await;
    let wasm = compile(REGEX_HANDLER, &resolution).await;

    let (code, stdout) = run_module(&wasm, r#"{"text": "a1 b22 c333"}"#).await;
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(stdout, r#"{"numbers":["1","22","333"]}"#);
    let regex = resolution
        .packages
        .iter()
        .find(|p| p.name == "regex")
        .expect("regex is in the resolution");
    assert!(regex.direct);
    assert!(regex.version.starts_with("1."), "{}", regex.version);
    let syntax = resolution
        .packages
        .iter()
        .find(|p| p.name == "regex-syntax")
        .expect("regex's own dependency is in the resolution");
    assert!(!syntax.direct);
    assert!(resolution.lockfile.contains("name = \"regex\""));
    assert!(resolution.lockfile.contains("checksum = "));
}

#[tokio::test]
async fn only_declared_crates_are_visible_to_the_handler() {
    let resolution = resolve(&deps(serde_json::json!({"regex": "1"})), None).await;
    let source = "pub fn handler(_: ()) -> Result<bool, String> { Ok(regex_syntax::is_meta_character('.')) }\n";

    let result = toolchain()
        .await
        .compile(source, Some(&resolution), &CompileLimits::default())
        .await;

    match result {
        Err(CompileFailure::User(message)) => {
            assert!(message.contains("regex_syntax"), "{message}")
        }
        other => panic!("expected a user error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_rebuild_from_the_lockfile_gives_the_same_lockfile_and_module() {
    let declared = deps(serde_json::json!({"itoa": "1"}));
    let source = "pub fn handler(n: u64) -> Result<String, String> { Ok(itoa::Buffer::new().format(n).to_owned()) }\n";
    let first = resolve(&declared, None).await;
    let first_module = compile(source, &first).await;

    let again = resolve(&declared, Some(&first.lockfile)).await;
    // Remove the cached set, so the second module comes from a fresh build.
    let set_dir = toolchain().await.dependency_set_dir(&again).unwrap();
    std::fs::remove_dir_all(&set_dir).unwrap();
    let builds_before = toolchain().await.dependency_set_builds();
    let second_module = compile(source, &again).await;

    assert_eq!(again.lockfile, first.lockfile);
    assert!(toolchain().await.dependency_set_builds() > builds_before);
    assert!(set_dir.is_dir());
    assert!(first_module == second_module, "the rebuilt module differs");
    assert_eq!(
        run_module(&second_module, "12345").await,
        (0, "\"12345\"".to_owned())
    );
}

#[tokio::test]
async fn a_second_function_with_the_same_set_reuses_the_built_set() {
    let declared = deps(serde_json::json!({"regex": "1"}));
    let first = resolve(&declared, None).await;
    compile(REGEX_HANDLER, &first).await;
    let set_dir = toolchain().await.dependency_set_dir(&first).unwrap();
    // A file only this test writes: a rebuilt set would not have it.
    let marker = set_dir.join(format!("reused-{}", std::process::id()));
    std::fs::write(&marker, "").unwrap();

    let second = resolve(&declared, Some(&first.lockfile)).await;
    let other_source = "pub fn handler(s: String) -> Result<bool, String> { Ok(regex::Regex::new(\"^a\").unwrap().is_match(&s)) }\n";
    let wasm = compile(other_source, &second).await;

    assert_eq!(
        toolchain().await.dependency_set_dir(&second).unwrap(),
        set_dir
    );
    assert!(marker.exists(), "the set folder was rebuilt");
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(run_module(&wasm, "\"abc\"").await, (0, "true".to_owned()));
}

#[tokio::test]
async fn an_unknown_crate_is_a_user_error_naming_it() {
    let message = resolution_error(serde_json::json!({"plat-no-such-crate-zq": "1"})).await;

    assert!(message.contains("plat-no-such-crate-zq"), "{message}");
    assert!(message.contains("no crate named"), "{message}");
}

#[tokio::test]
async fn an_impossible_version_is_a_user_error_naming_it() {
    let message = resolution_error(serde_json::json!({"regex": "99"})).await;

    assert!(message.contains("`regex`"), "{message}");
    assert!(message.contains("99"), "{message}");
    assert!(!message.contains('/'), "{message}");
}

#[tokio::test]
async fn a_feature_the_crate_does_not_have_is_a_user_error_naming_it() {
    let message = resolution_error(serde_json::json!({
        "itoa": {"version": "1", "features": ["plat-no-such-feature"]}
    }))
    .await;

    assert!(message.contains("`itoa`"), "{message}");
    assert!(message.contains("plat-no-such-feature"), "{message}");
}

/// A crate whose build script reports what it can reach on the host, built
/// by the set build's sandbox. It panics (failing the build) with what it saw
/// if anything was reachable.
#[tokio::test]
async fn a_build_script_reaches_neither_the_network_nor_host_files() {
    let toolchain = toolchain().await;
    let scratch = tempfile::tempdir().unwrap();
    let host_secret = scratch.path().join("host-secret");
    std::fs::write(&host_secret, "the worker's data").unwrap();
    let job = scratch.path().join("job");
    let vendor = scratch.path().join("vendor");
    std::fs::create_dir_all(job.join("crate/src")).unwrap();
    std::fs::create_dir_all(&vendor).unwrap();
    let build_rs = format!(
        r#"
fn main() {{
    let mut reached = Vec::new();
    let addr: std::net::SocketAddr = "1.1.1.1:443".parse().unwrap();
    match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5)) {{
        Ok(_) => reached.push("connected to 1.1.1.1:443".to_owned()),
        Err(e) => println!("cargo:warning=network: {{e}}"),
    }}
    for path in ["/etc/passwd", "/etc/hostname", {secret:?}, {home:?}] {{
        match std::fs::read(path) {{
            Ok(bytes) => reached.push(format!("read {{path}} ({{}} bytes)", bytes.len())),
            Err(e) => println!("cargo:warning=file {{path}}: {{e}}"),
        }}
    }}
    match std::fs::read_dir({cache:?}) {{
        Ok(_) => reached.push("listed the worker's cache".to_owned()),
        Err(e) => println!("cargo:warning=cache: {{e}}"),
    }}
    if !reached.is_empty() {{
        panic!("REACHED THE HOST: {{reached:?}}");
    }}
    println!("cargo:warning=isolated");
}}
"#,
        secret = host_secret.to_str().unwrap(),
        home = std::env::var("HOME").unwrap_or_else(|_| "/root".to_owned()) + "/.bashrc",
        cache = std::env::temp_dir()
            .join("plat-test-rust-deps")
            .to_str()
            .unwrap(),
    );
    std::fs::write(job.join("crate/build.rs"), build_rs).unwrap();
    std::fs::write(job.join("crate/src/lib.rs"), "").unwrap();
    std::fs::write(
        job.join("crate/Cargo.toml"),
        "[package]\nname = \"probe\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(
        job.join("crate/Cargo.lock"),
        "version = 4\n\n[[package]]\nname = \"probe\"\nversion = \"0.0.0\"\n",
    )
    .unwrap();

    let finished = super::build_in_sandbox(
        toolchain.sandbox(),
        &job,
        &vendor,
        &CompileLimits::default(),
    )
    .await
    .expect("the sandbox runs cargo");

    let stdout = String::from_utf8_lossy(&finished.stdout);
    let stderr = String::from_utf8_lossy(&finished.stderr);
    assert!(
        !stdout.contains("REACHED THE HOST") && !stderr.contains("REACHED THE HOST"),
        "{stdout}\n{stderr}"
    );
    assert!(finished.status.success(), "{stderr}");
    assert!(stderr.contains(": isolated"), "{stderr}");
    assert!(stderr.contains("network:"), "{stderr}");
}

/// The crates the default allowlist names, together in one set, on wasm32-wasip1.
#[tokio::test]
async fn the_allowlisted_crates_build_for_wasm_and_run() {
    let declared = deps(serde_json::json!({
        "base64": "0.22",
        "sha2": "0.10",
        "hex": "0.4",
        "chrono": {"version": "0.4", "features": ["serde", "clock"]},
        "uuid": {"version": "1", "features": ["v4"]},
        "itoa": "1",
        "smallvec": "1",
    }));
    let source = r#"use base64::Engine;
use sha2::Digest;
pub fn handler(input: String) -> Result<serde_json::Value, String> {
    let mut small: smallvec::SmallVec<[u8; 4]> = smallvec::SmallVec::new();
    small.extend_from_slice(input.as_bytes());
    Ok(serde_json::json!({
        "sha256": hex::encode(sha2::Sha256::digest(input.as_bytes())),
        "base64": base64::engine::general_purpose::STANDARD.encode(&input),
        "date": chrono::NaiveDate::from_ymd_opt(2024, 2, 29).unwrap().to_string(),
        "nowIsLater": chrono::Utc::now().timestamp() > 1_700_000_000,
        "uuidVersion": uuid::Uuid::new_v4().get_version_num(),
        "length": itoa::Buffer::new().format(small.len()).to_owned(),
    }))
}
"#;
    let resolution = resolve(&declared, None).await;
    let wasm = compile(source, &resolution).await;

    let (code, stdout) = run_module(&wasm, "\"abc\"").await;
    assert_eq!(code, 0, "{stdout}");
    let output: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        output,
        serde_json::json!({
            "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "base64": "YWJj",
            "date": "2024-02-29",
            "nowIsLater": true,
            "uuidVersion": 4,
            "length": "3",
        })
    );
}
