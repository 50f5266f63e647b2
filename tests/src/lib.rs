//! The harness for Plat's end-to-end tests: a real API on a loopback port,
//! real compiler and executor workers (in-process tasks, the same code the
//! binaries run), and a fresh PostgreSQL database per test (`#[sqlx::test]`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use plat_common::roles::ServiceRole;
use plat_worker_compiler::compile::Toolchains;
use plat_worker_compiler::CompilerConfig;
use plat_worker_executor::ExecutorConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgListener};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The migrator `#[sqlx::test(migrator = ...)]` applies to each test database.
pub use plat_common::db::MIGRATOR;

/// The API key of the admin every test app bootstraps; the app's `client`
/// sends it on every request.
pub const ADMIN_KEY: &str = "plat_test-admin-key-000000000000000000000000000000";
/// The key environments are encrypted with in tests (32 bytes of hex).
pub const SECRETS_KEY: &str = "7365637265747320666f722074657374732c206e6f7420666f72207573652121";

/// How long any single wait in a test may take before the test fails. A
/// generous bound, not a timing assertion: it only turns a hang into a failure.
const PATIENCE: Duration = Duration::from_secs(180);

/// A handler that greets `input.name`, the README's example.
pub const HELLO: &str = r#"
use serde_json::{json, Value};
pub fn handler(input: Value) -> Result<Value, String> {
    eprintln!("greeting {}", input["name"]);
    Ok(json!({ "greeting": format!("Hello, {}!", input["name"].as_str().unwrap_or("world")) }))
}
"#;

/// Which workers a test runs next to the API.
#[derive(Debug, Clone, Copy)]
pub struct Workers {
    pub compilers: usize,
    pub executors: usize,
}

impl Workers {
    /// The API alone: functions stay PENDING, executions stay QUEUED.
    pub const NONE: Workers = Workers {
        compilers: 0,
        executors: 0,
    };
    /// Builds happen, executions stay QUEUED.
    pub const COMPILER_ONLY: Workers = Workers {
        compilers: 1,
        executors: 0,
    };
    /// Executions would run, but nothing gets built.
    pub const EXECUTOR_ONLY: Workers = Workers {
        compilers: 0,
        executors: 1,
    };
}

impl Default for Workers {
    fn default() -> Self {
        Self {
            compilers: 1,
            executors: 1,
        }
    }
}

pub struct TestApp {
    pub base_url: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    shutdown: CancellationToken,
    /// Stops the API alone (a child of `shutdown`).
    api_shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts this is an RFC 9457 problem with `status` and returns its detail.
    pub fn problem(&self, status: StatusCode) -> &str {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(
            self.content_type, "application/problem+json",
            "body: {}",
            self.body
        );
        assert_eq!(self.body["status"], status.as_u16());
        assert!(
            self.body["type"].as_str().is_some_and(|t| !t.is_empty()),
            "body: {}",
            self.body
        );
        let detail = self.body["detail"].as_str().expect("problem has a detail");
        assert!(!detail.is_empty());
        detail
    }
}

/// One set of toolchains per test binary, as one per worker process in production.
async fn toolchains() -> Arc<Toolchains> {
    static TOOLCHAINS: OnceCell<Arc<Toolchains>> = OnceCell::const_new();
    TOOLCHAINS
        .get_or_init(|| async {
            let toolchains = Toolchains::prepare(&cache_dir())
                .await
                .expect("the toolchains are ready");
            Arc::new(toolchains)
        })
        .await
        .clone()
}

fn cache_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("plat-test-cache")
}

/// The executors' compiled-code cache, for in-process executors and
/// executor processes alike. Next to the compiler's cache in the target
/// folder (never in the source tree): shared by every test and kept between
/// test runs.
pub fn module_cache_dir() -> PathBuf {
    cache_dir().with_file_name("plat-test-module-cache")
}

/// Settings with short leases and polls, so rescue and fallback paths run
/// within a test's lifetime.
pub fn compiler_config() -> CompilerConfig {
    CompilerConfig {
        concurrency: 2,
        cache_dir: cache_dir(),
        compile_timeout_secs: 120,
        compile_memory_mb: 2048,
        dependency_build_timeout_secs: 600,
        lease_secs: 3,
        poll_interval_ms: 1000,
        shutdown_grace_secs: 5,
        max_module_bytes: plat_worker_compiler::compile::DEFAULT_MAX_MODULE_BYTES,
        secrets_key: Some(SECRETS_KEY.parse().expect("a valid secrets key")),
        secrets_previous_keys: Default::default(),
        dependency_policy: None,
        npm_registry: plat_worker_compiler::compile::typescript::packages::DEFAULT_NPM_REGISTRY
            .to_owned(),
    }
}

/// The test apps' API settings: small limits, the test admin bootstrapped,
/// environments encrypted with [`SECRETS_KEY`].
pub fn api_config() -> plat_api::ApiConfig {
    plat_api::ApiConfig {
        max_source_bytes: 64 * 1024,
        max_input_bytes: 64 * 1024,
        bootstrap_admin_key: Some(ADMIN_KEY.to_owned().into()),
        secrets_key: Some(SECRETS_KEY.parse().expect("a valid secrets key")),
        ..Default::default()
    }
}

/// The password of the services' login roles in test clusters. Not a
/// secret: the clusters hold test data only (and scripts/test's trusts
/// loopback anyway); it lets the tests' own SCRAM clusters (`plat up`'s,
/// in outage tests) accept the roles too.
const SERVICE_ROLE_PASSWORD: &str = "plat-test-service-role";

/// How a component logs in to the database of `pool` (the test's, as its
/// superuser): as the service's LOGIN role, a member of the role the
/// migrations grant to, as a deployment does (docs/security.md, "Database
/// roles"). The role is created on first use in the cluster.
pub async fn service_options(pool: &PgPool, role: ServiceRole) -> PgConnectOptions {
    plat_common::roles::create_login(pool, role, Some(SERVICE_ROLE_PASSWORD))
        .await
        .expect("the service's login role exists");
    pool.connect_options()
        .as_ref()
        .clone()
        .username(role.login())
        .password(SERVICE_ROLE_PASSWORD)
}

/// An HTTP client that sends `Authorization: Bearer <key>` on every request.
pub fn client_with_key(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse().expect("a header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("an HTTP client")
}

pub fn executor_config() -> ExecutorConfig {
    ExecutorConfig {
        concurrency: Some(2),
        prefetch: 8,
        module_cache_size: 16,
        module_cache_dir: module_cache_dir(),
        lease_secs: 3,
        poll_interval_ms: 1000,
        shutdown_grace_secs: 5,
        secrets_key: Some(SECRETS_KEY.parse().expect("a valid secrets key")),
        secrets_previous_keys: Default::default(),
    }
}

impl TestApp {
    /// The API with one compiler and one executor.
    pub async fn spawn(pool: PgPool) -> Self {
        Self::spawn_with(pool, Workers::default()).await
    }

    pub async fn spawn_with(pool: PgPool, workers: Workers) -> Self {
        Self::spawn_configured(pool, workers, api_config()).await
    }

    /// The API with `config` (keep its bootstrap key: `client` sends
    /// [`ADMIN_KEY`]) and the given workers.
    pub async fn spawn_configured(
        pool: PgPool,
        workers: Workers,
        config: plat_api::ApiConfig,
    ) -> Self {
        plat_common::telemetry::init_for_tests();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let mut app = Self {
            base_url,
            client: client_with_key(ADMIN_KEY),
            pool: pool.clone(),
            api_shutdown: shutdown.child_token(),
            shutdown,
            tasks: Vec::new(),
        };
        let (shutdown, api_pool) = (
            app.api_shutdown.clone(),
            app.component_pool(ServiceRole::Api, 10).await,
        );
        app.tasks.push(tokio::spawn(async move {
            plat_api::serve_on(listener, api_pool, config, shutdown)
                .await
                .expect("API serves");
        }));
        for _ in 0..workers.compilers {
            app.start_compiler().await;
        }
        for _ in 0..workers.executors {
            app.start_executor(executor_config()).await;
        }
        app
    }

    /// A pool of its own for one component, on the test's database, as each
    /// process has in production (a `LISTEN` holds one connection for good),
    /// logged in as the component's own role: every end-to-end test thus
    /// proves that the grants of the service roles suffice.
    async fn component_pool(&self, role: ServiceRole, max_connections: u32) -> PgPool {
        plat_common::db::pool_options(max_connections)
            .connect_with(service_options(&self.pool, role).await)
            .await
            .expect("component pool")
    }

    /// Tells the API to stop, as SIGTERM would; the workers keep running.
    pub fn stop_api(&self) {
        self.api_shutdown.cancel();
    }

    /// Starts another API on this app's database with `config` (its own
    /// port); returns its base URL. It stops with the app.
    pub async fn start_api(&mut self, config: plat_api::ApiConfig) -> String {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, pool) = (
            self.shutdown.child_token(),
            self.component_pool(ServiceRole::Api, 4).await,
        );
        self.tasks.push(tokio::spawn(async move {
            plat_api::serve_on(listener, pool, config, shutdown)
                .await
                .expect("API serves");
        }));
        base_url
    }

    pub async fn start_compiler(&mut self) {
        self.start_compiler_with(compiler_config()).await;
    }

    /// Starts a compiler worker with `config` (the shared toolchains).
    pub async fn start_compiler_with(&mut self, config: CompilerConfig) {
        let (pool, shutdown, toolchains) = (
            self.component_pool(ServiceRole::Compiler, 4).await,
            self.shutdown.clone(),
            toolchains().await,
        );
        self.tasks.push(tokio::spawn(async move {
            plat_worker_compiler::run_with_toolchains(pool, config, toolchains, shutdown)
                .await
                .expect("the compiler's settings are usable");
        }));
    }

    /// Starts an executor worker; the returned token stops just this one.
    pub async fn start_executor(&mut self, config: ExecutorConfig) -> CancellationToken {
        let stop = self.shutdown.child_token();
        let (pool, token) = (
            self.component_pool(ServiceRole::Executor, 4).await,
            stop.clone(),
        );
        self.tasks.push(tokio::spawn(async move {
            plat_worker_executor::run(pool, config, token)
                .await
                .expect("executor runs");
        }));
        stop
    }

    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base_url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request sent")).await
    }

    /// Sends `body` verbatim with the given content type.
    pub async fn request_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        let request = self
            .client
            .request(method, format!("{}{path}", self.base_url))
            .header("content-type", content_type)
            .body(body);
        read(request.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, None).await
    }

    /// Sends a request with `client` (another caller's credentials, or none).
    pub async fn request_with(
        &self,
        client: &reqwest::Client,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut request = client.request(method, format!("{}{path}", self.base_url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request sent")).await
    }

    /// Creates a user (as the admin) and returns their id.
    pub async fn create_user(&self, email: &str, role: &str, password: Option<&str>) -> String {
        let reply = self
            .request(
                Method::POST,
                "/users",
                Some(json!({ "email": email, "role": role, "password": password })),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["id"].as_str().expect("an id").to_owned()
    }

    /// Creates an API key for the user (as the admin) and returns the key.
    pub async fn create_key(&self, user_id: &str) -> String {
        let reply = self
            .request(
                Method::POST,
                "/api-keys",
                Some(json!({ "userId": user_id, "name": "test" })),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["key"].as_str().expect("a key").to_owned()
    }

    /// Registers a Rust function and returns its id.
    pub async fn create_function(&self, name: &str, source: &str, config: Value) -> String {
        self.create_function_in("rust", name, source, config).await
    }

    /// Registers a function in `language` and returns its id.
    pub async fn create_function_in(
        &self,
        language: &str,
        name: &str,
        source: &str,
        config: Value,
    ) -> String {
        let reply = self
            .request(
                Method::POST,
                "/functions",
                Some(json!({ "name": name, "language": language, "source": source, "executionConfig": config })),
            )
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        reply.body["id"].as_str().expect("an id").to_owned()
    }

    /// Registers a Rust function and waits until it is READY.
    pub async fn ready_function(&self, name: &str, source: &str, config: Value) -> String {
        self.ready_function_in("rust", name, source, config).await
    }

    /// Registers a function in `language` and waits until it is READY.
    pub async fn ready_function_in(
        &self,
        language: &str,
        name: &str,
        source: &str,
        config: Value,
    ) -> String {
        let id = self
            .create_function_in(language, name, source, config)
            .await;
        let function = self.wait_for_build(&id, 1).await;
        assert_eq!(function["status"], "READY", "{function}");
        id
    }

    /// Waits until version `version` of the function is built (READY or
    /// FAILED) and returns the function.
    pub async fn wait_for_build(&self, id: &str, version: i64) -> Value {
        self.wait_until(plat_common::notify::FUNCTION_VERSION_BUILT, || async {
            let function = self.get(&format!("/functions/{id}")).await.body;
            let built = function["version"] == version
                && matches!(function["status"].as_str(), Some("READY" | "FAILED"));
            built.then_some(function)
        })
        .await
    }

    /// Executes with `?wait=SECS` and returns the reply.
    pub async fn execute(&self, id: &str, input: Value, wait: u32) -> Reply {
        self.request(
            Method::POST,
            &format!("/functions/{id}/execute?wait={wait}"),
            Some(input),
        )
        .await
    }

    /// Executes `{"case": case}` (waiting up to 30 s) and returns the
    /// execution: the tests' functions that pick a behaviour by `case`.
    pub async fn run_case(&self, id: &str, case: &str) -> Value {
        let reply = self.execute(id, json!({ "case": case }), 30).await;
        assert_eq!(reply.status, StatusCode::OK, "case {case}: {}", reply.body);
        reply.body
    }

    /// Waits until the execution is finished and returns it.
    pub async fn wait_for_execution(&self, id: &str) -> Value {
        self.wait_until(plat_common::notify::EXECUTION_FINISHED, || async {
            let execution = self.get(&format!("/executions/{id}")).await.body;
            matches!(
                execution["status"].as_str(),
                Some("SUCCEEDED" | "FAILED" | "CANCELLED")
            )
            .then_some(execution)
        })
        .await
    }

    /// Waits until the execution has `status` (e.g. RUNNING, which is not
    /// notified: checked every second).
    pub async fn wait_for_status(&self, execution_id: &str, status: &str) {
        self.wait_until("plat_never_notified", || async {
            let execution = self.get(&format!("/executions/{execution_id}")).await.body;
            (execution["status"] == status).then_some(())
        })
        .await;
    }

    /// Re-checks `check` whenever `channel` is notified (and every second as
    /// a backstop), until it yields a value; fails the test after [`PATIENCE`].
    pub async fn wait_until<T, F, Fut>(&self, channel: &str, check: F) -> T
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        // Without a listener (a pooled connection a database restart had
        // closed, say) this polls each second: the notification only
        // shortens the wait, it never decides it.
        let mut listener = match PgListener::connect_with(&self.pool).await {
            Ok(mut listener) => listener.listen(channel).await.ok().map(|()| listener),
            Err(_) => None,
        };
        let waited = tokio::time::timeout(PATIENCE, async {
            loop {
                if let Some(value) = check().await {
                    return value;
                }
                match listener.as_mut() {
                    Some(connected) => {
                        let heard =
                            tokio::time::timeout(Duration::from_secs(1), connected.recv()).await;
                        if matches!(heard, Ok(Err(_))) {
                            listener = None;
                        }
                    }
                    None => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| panic!("gave up waiting on {channel} after {PATIENCE:?}"))
    }
}

/// A component binary of this workspace (`worker-executor`, `api`, ...), as
/// built by `cargo test --workspace` next to the test binaries.
pub fn workspace_binary(name: &str) -> PathBuf {
    let test_exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let binary = test_exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>")
        .join(name);
    assert!(
        binary.is_file(),
        "{} is missing: run the suite with `cargo test --workspace` (or `cargo build --bins` first)",
        binary.display()
    );
    binary
}

impl TestApp {
    /// `select count(*) from <table>` (optionally `where ...`), on this test's database.
    pub async fn count(&self, table_and_filter: &str) -> i64 {
        let (count,): (i64,) = sqlx::query_as(&format!("select count(*) from {table_and_filter}"))
            .fetch_one(&self.pool)
            .await
            .expect("count rows");
        count
    }

    /// A connection string for this test's database, for child processes.
    pub fn database_url(&self) -> String {
        let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for database tests");
        let (base, query) = match base.split_once('?') {
            Some((base, query)) => (base.to_owned(), format!("?{query}")),
            None => (base, String::new()),
        };
        let server = base
            .rsplit_once('/')
            .map_or(base.as_str(), |(server, _)| server);
        let database = self
            .pool
            .connect_options()
            .get_database()
            .expect("the test database's name")
            .to_owned();
        format!("{server}/{database}{query}")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Reads a whole response into a [`Reply`].
pub async fn read(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response.bytes().await.expect("response body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("a JSON body")
    };
    Reply {
        status,
        content_type,
        headers,
        body,
    }
}

/// Asserts that an execution FAILED with exactly this error and no output.
pub fn assert_failed_with(execution: &Value, error_type: &str, message: &str) {
    assert_eq!(execution["status"], "FAILED", "{execution}");
    assert_eq!(
        execution["error"],
        json!({ "type": error_type, "message": message }),
        "{execution}"
    );
    assert_eq!(execution["output"], Value::Null, "{execution}");
}

/// A loopback port nobody listens on right now, for a child process's API.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Waits until the API at `base_url` (a child process) answers `/readyz`
/// with 200; panics if it never does.
pub async fn wait_until_ready(base_url: &str) {
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(reply) = client.get(format!("{base_url}/readyz")).send().await {
            if reply.status() == StatusCode::OK {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the API at {base_url} did not become ready");
}

/// A live stream (`GET …/events`), read one event at a time.
pub struct EventStream {
    response: reqwest::Response,
    parser: plat_common::sse::Parser,
    pending: std::collections::VecDeque<plat_common::sse::Event>,
}

impl TestApp {
    /// Opens the live stream at `path` as the admin; asserts it is one.
    pub async fn events(&self, path: &str) -> EventStream {
        let response = self
            .client
            .get(format!("{}{path}", self.base_url))
            .send()
            .await
            .expect("open the stream");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let content_type = response.headers()[reqwest::header::CONTENT_TYPE].clone();
        assert_eq!(content_type, "text/event-stream", "{path}");
        EventStream {
            response,
            parser: plat_common::sse::Parser::default(),
            pending: Default::default(),
        }
    }
}

impl EventStream {
    /// The next event's name and JSON data, or `None` once the server
    /// ended the stream; fails the test after [`PATIENCE`].
    pub async fn next(&mut self) -> Option<(String, Value)> {
        let next = tokio::time::timeout(PATIENCE, async {
            loop {
                if let Some(event) = self.pending.pop_front() {
                    return Some(event);
                }
                let chunk = self.response.chunk().await.expect("read the stream")?;
                self.pending.extend(self.parser.feed(&chunk));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no event within {PATIENCE:?}"))?;
        let data = serde_json::from_str(&next.data)
            .unwrap_or_else(|error| panic!("event data is not JSON ({error}): {}", next.data));
        Some((next.event, data))
    }

    /// Skips events until `found` accepts one, and returns it; fails the
    /// test if the stream ends first.
    pub async fn until(&mut self, found: impl Fn(&str, &Value) -> bool) -> (String, Value) {
        loop {
            let (event, data) = self.next().await.expect("the stream ended first");
            if found(&event, &data) {
                return (event, data);
            }
        }
    }
}
