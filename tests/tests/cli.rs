//! The `plat` command as developers use it: the real binary, against a real
//! API with real workers, a real PostgreSQL and the real compilers. Each
//! test gets temporary folders for its functions and for the stored login
//! (`PLAT_CONFIG_DIR`), so nothing touches the user's own config.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use plat_tests::{client_with_key, read, workspace_binary, TestApp, ADMIN_KEY, MIGRATOR};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

/// The exit code of a failed build or run (see docs/cli.md).
const EXIT_FUNCTION_FAILED: i32 = 3;

/// A `plat` to run against one API, with its own config folder.
struct Plat {
    api_url: String,
    api_key: Option<String>,
    config: TempDir,
    work: TempDir,
}

/// What one `plat` process did.
#[derive(Debug)]
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    #[track_caller]
    fn assert_success(&self) -> &Self {
        assert_eq!(self.code, 0, "plat failed:\n{self}");
        self
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("stdout is not JSON ({error}):\n{self}"))
    }
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Plat {
    fn new(api_url: &str, api_key: Option<&str>) -> Self {
        Self {
            api_url: api_url.to_owned(),
            api_key: api_key.map(str::to_owned),
            config: tempfile::tempdir().unwrap(),
            work: tempfile::tempdir().unwrap(),
        }
    }

    /// A folder for a function, inside this test's work folder.
    fn dir(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    async fn run(&self, args: &[&str]) -> Ran {
        self.run_with_stdin(args, None).await
    }

    /// Runs `plat args…` (on tokio's process API: the API under test runs on
    /// this test's runtime and must keep serving meanwhile).
    async fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Ran {
        let mut command = tokio::process::Command::new(workspace_binary("plat"));
        command
            .args(args)
            .current_dir(self.work.path())
            .env_remove("PLAT_API_KEY")
            .env_remove("RUST_LOG")
            .env("PLAT_API_URL", &self.api_url)
            .env("PLAT_CONFIG_DIR", self.config.path())
            .env("PLAT_CACHE_DIR", compiler_cache_dir())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(key) = &self.api_key {
            command.env("PLAT_API_KEY", key);
        }
        let mut child = command.spawn().expect("start plat");
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(text.as_bytes()).await.unwrap();
            drop(pipe);
        }
        let output = child.wait_with_output().await.expect("plat ran");
        Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// The compiler cache the in-process test workers use (see plat_tests), so
/// `plat test` reuses the serde/serde_json they built.
fn compiler_cache_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("plat-test-cache")
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains(from),
        "{} has no {from:?}:\n{text}",
        path.display()
    );
    std::fs::write(path, text.replace(from, to)).unwrap();
}

fn set_version(dir: &Path, version: &str) {
    let path = dir.join("function.json");
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    manifest["version"] = json!(version);
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_rust_function_goes_from_init_to_deploy_to_a_new_version_and_back(pool: PgPool) {
    // Arrange
    let app = TestApp::spawn(pool).await;
    let plat = Plat::new(&app.base_url, Some(ADMIN_KEY));
    let dir = plat.dir("hello");
    let dir_arg = dir.to_str().unwrap();

    // Act & assert: a new folder runs locally, with its sample input.
    plat.run(&["init", "hello", "--lang", "rust", "--dir", dir_arg])
        .await
        .assert_success();
    assert!(dir.join("src/lib.rs").is_file());
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("function.json")).unwrap()).unwrap();
    assert_eq!(manifest["name"], "hello");
    assert_eq!(manifest["version"], "0.1.0");
    assert_eq!(manifest["language"], "rust");
    assert_eq!(manifest["entry"], "src/lib.rs");
    let local = plat.run(&["test", "--dir", dir_arg]).await;
    local.assert_success();
    assert!(local.stdout.contains("Hello, Ada!"), "{local}");
    assert!(
        local.stderr.contains("greeting Ada"),
        "the logs are shown: {local}"
    );

    // Deployed, it runs on the platform.
    let deployed = plat.run(&["deploy", "--dir", dir_arg]).await;
    deployed.assert_success();
    assert!(deployed.stdout.contains("READY"), "{deployed}");
    let invoked = plat
        .run(&["invoke", "hello", "--input", r#"{"name": "Grace"}"#])
        .await;
    invoked.assert_success();
    assert!(invoked.stdout.contains("Hello, Grace!"), "{invoked}");

    // A changed source under a higher version replaces it.
    edit(
        &dir.join("src/lib.rs"),
        "\"Hello, {name}!\"",
        "\"Howdy, {name}!\"",
    );
    set_version(&dir, "0.2.0");
    plat.run(&["deploy", "--dir", dir_arg])
        .await
        .assert_success();
    let invoked = plat
        .run(&["invoke", "hello", "--input", r#"{"name": "Grace"}"#])
        .await;
    invoked.assert_success();
    assert!(invoked.stdout.contains("Howdy, Grace!"), "{invoked}");

    // Both versions are listed, and rolling back brings the first one back.
    let versions = plat.run(&["versions", "hello", "--output", "json"]).await;
    versions.assert_success();
    let mut semvers: Vec<String> = versions.json()["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {versions}"))
        .iter()
        .map(|v| v["semver"].as_str().unwrap_or_default().to_owned())
        .collect();
    semvers.sort();
    assert_eq!(semvers, ["0.1.0", "0.2.0"], "{versions}");
    plat.run(&["rollback", "hello", "0.1.0"])
        .await
        .assert_success();
    let invoked = plat
        .run(&[
            "invoke",
            "hello",
            "--input",
            r#"{"name": "Grace"}"#,
            "-o",
            "json",
        ])
        .await;
    invoked.assert_success();
    let execution = invoked.json();
    assert_eq!(execution["status"], "SUCCEEDED", "{invoked}");
    assert_eq!(
        execution["output"]["greeting"], "Hello, Grace!",
        "{invoked}"
    );

    // The listings are JSON in JSON mode.
    let listed = plat.run(&["ls", "-o", "json"]).await;
    listed.assert_success();
    assert_eq!(listed.json()["items"][0]["name"], "hello", "{listed}");
    let info = plat.run(&["info", "hello", "-o", "json"]).await;
    info.assert_success();
    assert_eq!(info.json()["function"]["name"], "hello", "{info}");
    let human = plat.run(&["ls"]).await;
    human.assert_success();
    assert!(human.stdout.starts_with("NAME"), "{human}");

    // A version that is not greater than the latest is refused with the server's reason.
    set_version(&dir, "0.2.0");
    let refused = plat.run(&["deploy", "--dir", dir_arg]).await;
    let expected = read(
        app.client
            .put(format!("{}/functions/hello", app.base_url))
            .json(&json!({"source": plat_tests::HELLO, "version": "0.2.0"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let detail = expected.problem(StatusCode::CONFLICT);
    assert_ne!(refused.code, 0, "{refused}");
    assert!(
        refused.stderr.contains(detail),
        "expected {detail:?}:\n{refused}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_function_that_does_not_compile_is_shown_at_its_line_with_a_caret(pool: PgPool) {
    // Arrange
    let app = TestApp::spawn(pool).await;
    let plat = Plat::new(&app.base_url, Some(ADMIN_KEY));
    let dir = plat.dir("broken");
    let dir_arg = dir.to_str().unwrap();
    plat.run(&["init", "broken", "--lang", "rust", "--dir", dir_arg])
        .await
        .assert_success();
    std::fs::write(
        dir.join("src/lib.rs"),
        "pub fn handler(input: serde_json::Value) -> Result<serde_json::Value, String> {\n    let count: u32 = \"not a number\";\n    Ok(input)\n}\n",
    )
    .unwrap();

    // Act
    let deployed = plat.run(&["deploy", "--dir", dir_arg]).await;

    // Assert
    assert_eq!(deployed.code, EXIT_FUNCTION_FAILED, "{deployed}");
    assert!(deployed.stderr.contains("src/lib.rs:2:"), "{deployed}");
    let lines: Vec<&str> = deployed.stderr.lines().collect();
    let at = lines
        .iter()
        .rposition(|line| line.starts_with("2 |     let count: u32 = \"not a number\";"))
        .unwrap_or_else(|| panic!("the source line is shown:\n{deployed}"));
    assert!(
        lines
            .get(at + 1)
            .is_some_and(|caret| caret.trim_end().ends_with('^')),
        "a caret follows the line:\n{deployed}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn login_stores_a_private_file_that_later_commands_use(pool: PgPool) {
    // Arrange
    let app = TestApp::spawn(pool).await;
    let plat = Plat::new(&app.base_url, None);

    // Act: the key comes on a piped stdin, as from a password manager.
    let logged_in = plat
        .run_with_stdin(&["login"], Some(&format!("{ADMIN_KEY}\n")))
        .await;

    // Assert
    logged_in.assert_success();
    let file = plat.config.path().join("credentials.json");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", file.display());
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(stored["apiKey"], ADMIN_KEY);
    plat.run(&["ls"]).await.assert_success();
    plat.run(&["logout"]).await.assert_success();
    assert!(!file.exists());
    let without = plat.run(&["ls"]).await;
    assert_ne!(without.code, 0, "{without}");
    assert!(without.stderr.contains("plat login"), "{without}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_bad_key_fails_with_the_servers_detail(pool: PgPool) {
    // Arrange
    let app = TestApp::spawn(pool).await;
    let bad_key = "plat_not-a-real-key-00000000000000000000000000000";
    let plat = Plat::new(&app.base_url, Some(bad_key));
    let expected = read(
        client_with_key(bad_key)
            .get(format!("{}/functions", app.base_url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let detail = expected.problem(StatusCode::UNAUTHORIZED);

    // Act
    let listed = plat.run(&["ls"]).await;
    let logged_in = plat
        .run(&["login", "--api-key", bad_key, "-o", "json"])
        .await;

    // Assert
    assert_eq!(listed.code, 1, "{listed}");
    assert!(
        listed.stderr.contains(detail),
        "expected {detail:?}:\n{listed}"
    );
    assert!(listed.stdout.is_empty(), "{listed}");
    assert_eq!(logged_in.code, 1, "{logged_in}");
    assert_eq!(logged_in.json()["error"]["status"], 401, "{logged_in}");
    assert!(!plat.config.path().join("credentials.json").exists());
}

#[tokio::test]
async fn a_typescript_function_is_created_and_run_locally() {
    // Arrange: no server at all.
    let plat = Plat::new("http://127.0.0.1:9", None);
    let dir = plat.dir("hello-ts");
    let dir_arg = dir.to_str().unwrap();
    plat.run(&["init", "hello-ts", "--lang", "ts", "--dir", dir_arg])
        .await
        .assert_success();

    // Act
    let local = plat
        .run(&[
            "test",
            "--dir",
            dir_arg,
            "--input",
            r#"{"name": "Lin"}"#,
            "-o",
            "json",
        ])
        .await;

    // Assert
    local.assert_success();
    let run = local.json();
    assert_eq!(run["status"], "SUCCEEDED", "{local}");
    assert_eq!(run["output"]["greeting"], "Hello, Lin!", "{local}");
    assert!(
        run["logs"].as_str().unwrap().contains("greeting Lin"),
        "{local}"
    );
    assert!(run["durationMs"].is_u64(), "{local}");

    // A syntax error is shown at its line in index.ts.
    std::fs::write(
        dir.join("index.ts"),
        "export default (input) => {\n  let x = ;\n};\n",
    )
    .unwrap();
    let broken = plat.run(&["test", "--dir", dir_arg]).await;
    assert_eq!(broken.code, EXIT_FUNCTION_FAILED, "{broken}");
    assert!(broken.stderr.contains("index.ts:2:"), "{broken}");
    assert!(broken.stderr.contains("2 |   let x = ;"), "{broken}");
}

#[tokio::test]
async fn init_refuses_a_folder_that_is_not_empty_and_names_the_server_refuses() {
    // Arrange
    let plat = Plat::new("http://127.0.0.1:9", None);
    let dir = plat.dir("taken");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("keep.txt"), "mine").unwrap();

    // Act
    let taken = plat
        .run(&[
            "init",
            "taken",
            "--lang",
            "rust",
            "--dir",
            dir.to_str().unwrap(),
        ])
        .await;
    let bad_name = plat.run(&["init", "bad name", "--lang", "rust"]).await;

    // Assert
    assert_eq!(taken.code, 1, "{taken}");
    assert!(taken.stderr.contains("not empty"), "{taken}");
    assert_eq!(
        std::fs::read_to_string(dir.join("keep.txt")).unwrap(),
        "mine"
    );
    assert_eq!(bad_name.code, 1, "{bad_name}");
    assert!(
        bad_name.stderr.contains("invalid function name"),
        "{bad_name}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn runs_are_followed_logged_deprecated_and_the_function_removed(pool: PgPool) {
    // Arrange: a TypeScript function (built in milliseconds), deployed.
    let app = TestApp::spawn(pool).await;
    let plat = Plat::new(&app.base_url, Some(ADMIN_KEY));
    let dir = plat.dir("greeter");
    let dir_arg = dir.to_str().unwrap();
    plat.run(&["init", "greeter", "--lang", "ts", "--dir", dir_arg])
        .await
        .assert_success();
    plat.run(&["deploy", "--dir", dir_arg])
        .await
        .assert_success();

    // `executions --follow` prints a run as it appears and as it changes.
    let mut follow = tokio::process::Command::new(workspace_binary("plat"))
        .args(["executions", "greeter", "--follow", "-o", "json"])
        .env("PLAT_API_URL", &plat.api_url)
        .env("PLAT_API_KEY", ADMIN_KEY)
        .env("PLAT_CONFIG_DIR", plat.config.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start plat executions --follow");
    let queued = plat
        .run(&[
            "invoke",
            "greeter",
            "--async",
            "-o",
            "json",
            "--input",
            r#"{"name": "Kay"}"#,
        ])
        .await;
    queued.assert_success();
    let id = queued.json()["id"].as_str().unwrap().to_owned();
    let mut lines = tokio::io::BufReader::new(follow.stdout.take().unwrap()).lines();
    let finished = tokio::time::timeout(std::time::Duration::from_secs(180), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let execution: Value = serde_json::from_str(&line).unwrap_or_else(|error| {
                panic!("not one JSON execution per line ({error}): {line}")
            });
            if execution["id"] == id.as_str() && execution["status"] == "SUCCEEDED" {
                return execution;
            }
        }
        panic!("--follow ended before the run finished");
    })
    .await
    .expect("--follow never showed the finished run");
    assert_eq!(finished["output"]["greeting"], "Hello, Kay!");
    follow.kill().await.ok();

    // `logs` prints the run's logs, and its status on stderr.
    let logs = plat.run(&["logs", &id]).await;
    logs.assert_success();
    assert!(logs.stdout.contains("greeting Kay"), "{logs}");
    assert!(logs.stderr.contains("SUCCEEDED"), "{logs}");

    // A deprecated version still runs, with its owner's message as a warning.
    plat.run(&[
        "deprecate",
        "greeter",
        "0.1.0",
        "--message",
        "use greeter-v2",
    ])
    .await
    .assert_success();
    let invoked = plat.run(&["invoke", "greeter"]).await;
    invoked.assert_success();
    assert!(invoked.stdout.contains("Hello, world!"), "{invoked}");
    assert!(invoked.stderr.contains("use greeter-v2"), "{invoked}");

    // Removing asks for --yes when nobody can be asked, then removes.
    let unconfirmed = plat.run(&["rm", "greeter"]).await;
    assert_eq!(unconfirmed.code, 1, "{unconfirmed}");
    assert!(unconfirmed.stderr.contains("--yes"), "{unconfirmed}");
    assert_eq!(app.count("functions").await, 1);
    plat.run(&["rm", "greeter", "--yes"]).await.assert_success();
    assert_eq!(app.count("functions").await, 0);
    let gone = plat.run(&["info", "greeter"]).await;
    assert_eq!(gone.code, 1, "{gone}");
    assert!(gone.stderr.contains("no function named"), "{gone}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn plat_retire_retires_a_version_for_good_and_invoking_it_is_refused(pool: PgPool) {
    // Arrange: a TypeScript function with versions 0.1.0 and 0.1.1 (active).
    let app = TestApp::spawn(pool).await;
    let plat = Plat::new(&app.base_url, Some(ADMIN_KEY));
    let id = app
        .ready_function_in(
            "typescript",
            "aging",
            "export default () => 1;\n",
            serde_json::json!({}),
        )
        .await;
    app.request(
        reqwest::Method::PUT,
        "/functions/aging",
        Some(serde_json::json!({ "source": "export default () => 2;\n" })),
    )
    .await;
    app.wait_for_build(&id, 2).await;

    let retired = plat.run(&["retire", "aging", "0.1.0"]).await;

    retired.assert_success();
    assert!(retired.stdout.contains("retired"), "{retired}");
    let versions = plat.run(&["versions", "aging"]).await;
    versions.assert_success();
    assert!(versions.stdout.contains("RETIRED"), "{versions}");
    let refused = plat.run(&["invoke", "aging", "--version", "0.1.0"]).await;
    assert_ne!(refused.code, 0, "{refused}");
    assert!(refused.stderr.contains("retired"), "{refused}");
    let active = plat.run(&["retire", "aging", "0.1.1"]).await;
    assert_ne!(active.code, 0, "{active}");
    assert!(active.stderr.contains("active version"), "{active}");
}
