//! The HTTP calls the scenarios make, as any client of the API would.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

/// How often a build's status is polled: fine enough for compile times
/// measured in milliseconds (TypeScript) and cheap for the API.
const BUILD_POLL: Duration = Duration::from_millis(20);
/// The longest a build may take before the run gives up (a first Rust
/// build on a cold machine can take a minute).
const BUILD_PATIENCE: Duration = Duration::from_secs(600);

/// Most inputs `POST /functions/{id}/executions/batch` takes per call.
pub const MAX_BATCH: usize = 1000;

#[derive(Debug, Clone)]
pub struct Api {
    base_url: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base_url: String) -> anyhow::Result<Self> {
        Self::with_key(base_url, crate::platform::BENCH_KEY)
    }

    /// A client that calls as the owner of `key`.
    pub fn with_key(base_url: String, key: &str) -> anyhow::Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {key}").parse()?,
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            // Up to 32 concurrent clients share it: keep their connections.
            .pool_max_idle_per_host(64)
            // A hung call fails the scenario instead of the whole run.
            .timeout(Duration::from_secs(120))
            .build()?;
        Ok(Self { base_url, http })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `PUT path` with a JSON body, which must answer 2xx; returns the body.
    pub async fn put_ok(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self.http.put(self.url(path)).json(body).send().await?;
        let (status, body) = read(response).await?;
        anyhow::ensure!(status.is_success(), "PUT {path}: {status} {body}");
        Ok(body)
    }

    /// `GET path`, which must answer 200; returns the body.
    pub async fn get_ok(&self, path: &str) -> anyhow::Result<Value> {
        let response = self.http.get(self.url(path)).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "GET {path}: {status} {body}");
        Ok(body)
    }

    /// A new DEV user (created by this client, an admin): their id and a
    /// client that calls as them.
    pub async fn new_dev(&self, email: &str) -> anyhow::Result<(Uuid, Self)> {
        let user = self
            .post_ok("/users", &json!({ "email": email, "role": "DEV" }))
            .await?;
        let key = self
            .post_ok(
                "/api-keys",
                &json!({ "userId": user["id"], "name": "bench" }),
            )
            .await?;
        let key = key["key"].as_str().context("the new key has no `key`")?;
        Ok((
            id_of(&user["id"])?,
            Self::with_key(self.base_url.clone(), key)?,
        ))
    }

    /// `POST path` with a JSON body, which must succeed; returns the body.
    async fn post_ok(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self.http.post(self.url(path)).json(body).send().await?;
        let (status, body) = read(response).await?;
        anyhow::ensure!(status.is_success(), "POST {path}: {status} {body}");
        Ok(body)
    }

    /// Registers a function and returns its id (the build is queued).
    pub async fn create_function(
        &self,
        name: &str,
        language: &str,
        source: &str,
    ) -> anyhow::Result<Uuid> {
        self.create_function_with(name, language, source, &json!({}))
            .await
    }

    /// Registers a function with `dependencies` (docs/dependencies.md).
    pub async fn create_function_with(
        &self,
        name: &str,
        language: &str,
        source: &str,
        dependencies: &Value,
    ) -> anyhow::Result<Uuid> {
        let body = json!({
            "name": name,
            "language": language,
            "source": source,
            "dependencies": dependencies,
        });
        let response = self
            .http
            .post(self.url("/functions"))
            .json(&body)
            .send()
            .await?;
        let (status, body) = read(response).await?;
        if status != StatusCode::ACCEPTED {
            bail!("POST /functions answered {status}: {body}");
        }
        id_of(&body["id"])
    }

    /// Polls the function every [`BUILD_POLL`] until it is READY; fails if
    /// the build FAILED. Returns when it was first seen READY.
    pub async fn wait_ready(&self, id: Uuid) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + BUILD_PATIENCE;
        loop {
            let response = self
                .http
                .get(self.url(&format!("/functions/{id}")))
                .send()
                .await?;
            let (_, function) = read(response).await?;
            match function["status"].as_str() {
                Some("READY") => return Ok(Instant::now()),
                Some("FAILED") => bail!(
                    "function {id} failed to build: {}",
                    function["compileError"]
                ),
                _ if Instant::now() > deadline => {
                    bail!("function {id} was not built after {BUILD_PATIENCE:?}: {function}")
                }
                _ => tokio::time::sleep(BUILD_POLL).await,
            }
        }
    }

    /// `POST /functions/{id}/execute?wait=WAIT`: the status and the execution.
    pub async fn execute(
        &self,
        id: Uuid,
        input: &Value,
        wait: u32,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let response = self
            .http
            .post(self.url(&format!("/functions/{id}/execute?wait={wait}")))
            .json(input)
            .send()
            .await?;
        read(response).await
    }

    /// Executes and waits up to 30 s; fails unless the execution SUCCEEDED.
    pub async fn execute_ok(&self, id: Uuid, input: &Value) -> anyhow::Result<Uuid> {
        let (status, execution) = self.execute(id, input, 30).await?;
        if status != StatusCode::OK || execution["status"] != "SUCCEEDED" {
            bail!("execute answered {status}: {execution}");
        }
        id_of(&execution["id"])
    }

    /// Queues one execution without waiting (`?wait=0`, answered 202).
    pub async fn enqueue(&self, id: Uuid, input: &Value) -> anyhow::Result<Uuid> {
        let (status, execution) = self.execute(id, input, 0).await?;
        if status != StatusCode::ACCEPTED {
            bail!("execute?wait=0 answered {status}: {execution}");
        }
        id_of(&execution["id"])
    }

    /// Queues one execution per input through the bulk endpoint (at most
    /// [`MAX_BATCH`] inputs) and returns their ids.
    pub async fn enqueue_batch(&self, id: Uuid, inputs: &[Value]) -> anyhow::Result<Vec<Uuid>> {
        let response = self
            .http
            .post(self.url(&format!("/functions/{id}/executions/batch")))
            .json(&json!({ "inputs": inputs }))
            .send()
            .await?;
        let (status, body) = read(response).await?;
        if status != StatusCode::ACCEPTED {
            bail!("POST /functions/{id}/executions/batch answered {status}: {body}");
        }
        body["executionIds"]
            .as_array()
            .context("the batch answer has no executionIds")?
            .iter()
            .map(id_of)
            .collect()
    }

    /// Queues `{"n": i}` for every `i` in `range`, in batches of
    /// [`MAX_BATCH`], one call after the other; returns the ids.
    pub async fn enqueue_numbers(
        &self,
        id: Uuid,
        range: std::ops::Range<usize>,
    ) -> anyhow::Result<Vec<Uuid>> {
        let mut ids = Vec::with_capacity(range.len());
        let numbers: Vec<usize> = range.collect();
        for chunk in numbers.chunks(MAX_BATCH) {
            let inputs: Vec<Value> = chunk.iter().map(|n| json!({ "n": n })).collect();
            ids.extend(self.enqueue_batch(id, &inputs).await?);
        }
        Ok(ids)
    }
}

async fn read(response: reqwest::Response) -> anyhow::Result<(StatusCode, Value)> {
    let status = response.status();
    let bytes = response.bytes().await?;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "a {status} answer that is not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        })?
    };
    Ok((status, body))
}

fn id_of(value: &Value) -> anyhow::Result<Uuid> {
    value
        .as_str()
        .and_then(|id| id.parse().ok())
        .with_context(|| format!("not an id: {value}"))
}
