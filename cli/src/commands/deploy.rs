//! `plat deploy`: sends the folder's function to the platform (create, or a
//! new version of an existing one) and waits for the build of exactly the
//! version it made.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use plat_common::VersionStatus;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{shown, Context, FunctionDirArg};
use crate::client::{ApiClient, ApiError, ApiResponse};
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
    status: VersionStatus,
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
    let accepted = send(&client, &function, existing.as_ref()).await?;
    let view = accepted.body;
    let number = view["version"]
        .as_i64()
        .with_context(|| format!("the API's answer has no version number: {view}"))?;
    if !context.json() {
        let verb = if existing.is_some() {
            "updated"
        } else {
            "created"
        };
        eprintln!(
            "{verb} {name}: version {} (#{number}), building…",
            manifest.version
        );
    }

    let build = if deploy.no_wait || accepted.status == StatusCode::OK {
        // 200: nothing to build (the server changed metadata only).
        Build {
            status: view["status"]
                .as_str()
                .and_then(|status| status.parse().ok())
                .unwrap_or(VersionStatus::Pending),
            compile_error: None,
        }
    } else {
        let timeout = Duration::from_secs(deploy.timeout);
        wait_for_build(context, &client, name, number, timeout).await?
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
    report(context, &function, number, build)
}

/// Creates the function, or sends a new version of the `existing` one
/// (which must be in the same language).
async fn send(
    client: &ApiClient,
    function: &FunctionDir,
    existing: Option<&Value>,
) -> anyhow::Result<ApiResponse> {
    let manifest = &function.manifest;
    let name = manifest.name.as_str();
    let mut body = manifest.common_fields(&function.source);
    let Some(current) = existing else {
        body.insert("name".into(), json!(name));
        body.insert("language".into(), json!(manifest.language.as_str()));
        return client
            .post(&["functions"], &Value::Object(body))
            .await
            .with_context(|| format!("creating function {name}"));
    };
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
        .with_context(|| format!("deploying version {} of {name}", manifest.version))
}

/// Says how the build ended (a compile error in the user's own file and
/// lines); a failed build is the command's failure.
fn report(
    context: &Context,
    function: &FunctionDir,
    number: i64,
    build: Build,
) -> anyhow::Result<()> {
    let manifest = &function.manifest;
    let (name, version) = (manifest.name.as_str(), &manifest.version);
    match build.status {
        VersionStatus::Failed => {
            if !context.json() {
                let compile_error = build
                    .compile_error
                    .as_deref()
                    .unwrap_or("(no compile error given)");
                let file = manifest.language.compiler_file_name();
                let shown_path = shown(&function.entry_path);
                let annotated =
                    source_location::annotate(compile_error, file, &function.source, &shown_path);
                eprintln!("{annotated}");
            }
            Err(FunctionFailed(format!(
                "version {version} of {name} failed to compile; the active version (if any) keeps serving"
            ))
            .into())
        }
        VersionStatus::Ready => {
            if !context.json() {
                println!(
                    "{name} {version} is READY (#{number}). Run it: plat invoke {name} --input '{{}}'"
                );
            }
            Ok(())
        }
        status @ (VersionStatus::Pending | VersionStatus::Compiling) => {
            if !context.json() {
                println!(
                    "{name} {version} was accepted (#{number}, {status}); `plat versions {name}` shows when it is built"
                );
            }
            Ok(())
        }
    }
}

/// Waits until the version's build ends, with a spinner on a terminal: looks
/// at the version, then again each time the function's live stream says a
/// build of it moved on.
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
    let deadline = tokio::time::Instant::from_std(Instant::now() + timeout);
    let mut stream = crate::events::Stream::new(client, &["functions", name, "events"]);
    let result = loop {
        match build_state(client, name, number).await {
            Ok(Some(build)) => break Ok(build),
            Ok(None) => {}
            Err(error) => break Err(error),
        }
        // The stream starts with the latest version's state, so a build
        // that ended since the look above is not missed.
        match tokio::time::timeout_at(deadline, build_moved_on(&mut stream, number)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => break Err(error.into()),
            Err(_) => {
                break Err(anyhow::anyhow!(
                    "the build of {name} #{number} did not finish within {} s; `plat versions {name}` shows its status",
                    timeout.as_secs()
                ))
            }
        }
    };
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    result
}

/// Waits for a `version` event about version `number` (or a `resync`).
async fn build_moved_on(stream: &mut crate::events::Stream, number: i64) -> Result<(), ApiError> {
    loop {
        let (event, data) = stream.next_json().await?;
        if event == "resync" || (event == "version" && data["version"].as_i64() == Some(number)) {
            return Ok(());
        }
    }
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
    let status = state["status"]
        .as_str()
        .and_then(|status| status.parse().ok());
    Ok(status
        .filter(|status: &VersionStatus| status.is_built())
        .map(|status| Build {
            status,
            compile_error: state["compileError"].as_str().map(str::to_owned),
        }))
}
