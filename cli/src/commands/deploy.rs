//! `plat deploy`: sends the folder's function to the platform (create, or a
//! new version of an existing one) and waits for the build of exactly the
//! version it made.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{shown, Backoff, Context, FunctionDirArg};
use crate::client::{ApiClient, ApiError};
use crate::failure::FunctionFailed;
use crate::manifest::FunctionDir;
use crate::{output, source_location};

#[derive(Debug, Args)]
pub struct Deploy {
    #[command(flatten)]
    dir: FunctionDirArg,
    /// Return once the platform accepted the source, without waiting for the build.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting for the build after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    timeout: u64,
}

/// Where the build of the deployed version ended.
struct Build {
    status: String,
    compile_error: Option<String>,
}

pub async fn run(context: &Context, deploy: Deploy) -> anyhow::Result<()> {
    let function = FunctionDir::load(&deploy.dir.path())?;
    let manifest = &function.manifest;
    let client = context.client()?;
    let name = manifest.name.as_str();

    let existing = match client.get(&["functions", name], &[]).await {
        Ok(found) => Some(found.body),
        Err(error) if error.is_not_found() => None,
        Err(error) => return Err(error.into()),
    };
    let mut body = manifest.common_fields(&function.source);
    let accepted = match &existing {
        None => {
            body.insert("name".into(), json!(name));
            body.insert("language".into(), json!(manifest.language.as_str()));
            client
                .post(&["functions"], &Value::Object(body))
                .await
                .with_context(|| format!("creating function {name}"))?
        }
        Some(current) => {
            let language = current["language"].as_str().unwrap_or_default();
            if language != manifest.language.as_str() {
                anyhow::bail!(
                    "function {name} exists as a {language} function; function.json says {}. A function keeps its language: choose another name, or `plat rm {name}` first",
                    manifest.language.as_str()
                );
            }
            client
                .put(&["functions", name], &Value::Object(body))
                .await
                .with_context(|| format!("deploying version {} of {name}", manifest.version))?
        }
    };
    let view = accepted.body;
    let number = view["version"]
        .as_i64()
        .with_context(|| format!("the API's answer has no version number: {view}"))?;
    let verb = if existing.is_some() {
        "updated"
    } else {
        "created"
    };
    if !context.json() {
        eprintln!(
            "{verb} {name}: version {} (#{number}), building…",
            manifest.version
        );
    }

    let build = if deploy.no_wait || accepted.status == StatusCode::OK {
        // 200: nothing to build (the server changed metadata only).
        Build {
            status: view["status"].as_str().unwrap_or("PENDING").to_owned(),
            compile_error: None,
        }
    } else {
        wait_for_build(
            context,
            &client,
            name,
            number,
            Duration::from_secs(deploy.timeout),
        )
        .await?
    };

    if context.json() {
        output::print_json(&json!({
            "name": name,
            "created": existing.is_none(),
            "version": manifest.version,
            "number": number,
            "status": build.status,
            "compileError": build.compile_error,
            "function": view,
        }));
    }
    match build.status.as_str() {
        "FAILED" => {
            if !context.json() {
                let compile_error = build
                    .compile_error
                    .as_deref()
                    .unwrap_or("(no compile error given)");
                eprintln!(
                    "{}",
                    source_location::annotate(
                        compile_error,
                        manifest.language.compiler_file_name(),
                        &function.source,
                        &shown(&function.entry_path),
                    )
                );
            }
            Err(FunctionFailed(format!(
                "version {} of {name} failed to compile; the active version (if any) keeps serving",
                manifest.version
            ))
            .into())
        }
        "READY" => {
            if !context.json() {
                println!(
                    "{name} {} is READY (#{number}). Run it: plat invoke {name} --input '{{}}'",
                    manifest.version
                );
            }
            Ok(())
        }
        status => {
            if !context.json() {
                println!(
                    "{name} {} was accepted (#{number}, {status}); `plat versions {name}` shows when it is built",
                    manifest.version
                );
            }
            Ok(())
        }
    }
}

/// Polls the version until its build ends, with a spinner on a terminal.
async fn wait_for_build(
    context: &Context,
    client: &ApiClient,
    name: &str,
    number: i64,
    timeout: Duration,
) -> anyhow::Result<Build> {
    let spinner = context.interactive_stderr().then(|| {
        let spinner = ProgressBar::new_spinner();
        spinner.set_style(
            ProgressStyle::with_template("{spinner} compiling {msg} ({elapsed})")
                .expect("a valid template"),
        );
        spinner.set_message(format!("{name} #{number}"));
        spinner.enable_steady_tick(Duration::from_millis(100));
        spinner
    });
    let started = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
    let result = loop {
        match build_state(client, name, number).await {
            Ok(Some(build)) => break Ok(build),
            Ok(None) if started.elapsed() >= timeout => {
                break Err(anyhow::anyhow!(
                    "the build of {name} #{number} did not finish within {} s; `plat versions {name}` shows its status",
                    timeout.as_secs()
                ))
            }
            Ok(None) => backoff.wait().await,
            Err(error) => break Err(error),
        }
    };
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    result
}

/// The build's end, or `None` while it runs. Reads the version itself
/// (`GET /functions/{name}/versions/{number}`); a server without that route
/// is answered from the function's latest-version status while the latest
/// version is still ours.
async fn build_state(client: &ApiClient, name: &str, number: i64) -> anyhow::Result<Option<Build>> {
    let number_text = number.to_string();
    let state = match client
        .get(&["functions", name, "versions", &number_text], &[])
        .await
    {
        Ok(version) => version.body,
        Err(ApiError::Problem {
            status, ref detail, ..
        }) if status == StatusCode::NOT_FOUND && detail.starts_with("no route") => {
            let function = client.get(&["functions", name], &[]).await?.body;
            if function["version"].as_i64() != Some(number) {
                anyhow::bail!(
                    "another deploy of {name} came after #{number}; `plat versions {name}` shows each build"
                );
            }
            function
        }
        Err(error) => return Err(error.into()),
    };
    let status = state["status"].as_str().unwrap_or_default();
    Ok(matches!(status, "READY" | "FAILED").then(|| Build {
        status: status.to_owned(),
        compile_error: state["compileError"].as_str().map(str::to_owned),
    }))
}
