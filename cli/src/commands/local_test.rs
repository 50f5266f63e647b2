//! `plat test`: compile and run the function here, with the platform's own
//! compiler and executor code (worker-compiler's toolchains, worker-executor's
//! runtime) and the same limits, so a function that passes here builds and
//! behaves the same once deployed. No server, no database.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use plat_worker_compiler::compile::policy::PolicySource;
use plat_worker_compiler::compile::{BuildRequest, CompileFailure, CompileLimits, Toolchains};
use plat_worker_executor::runtime::{RunLimits, RunOutcome, Runtime};
use serde_json::{json, Value};

use super::{report, shown, Context, FunctionDirArg};
use crate::failure::FunctionFailed;
use crate::manifest::FunctionDir;
use crate::{input, source_location};

#[derive(Debug, Args)]
pub struct Test {
    /// The input: a JSON file, `-` for stdin, or JSON text [default: the folder's input.json, else null]
    #[arg(long, value_name = "FILE|JSON")]
    input: Option<String>,
    #[command(flatten)]
    dir: FunctionDirArg,
    /// Where the Rust dependencies (serde, serde_json, built once) and compiled
    /// code are kept [default: plat/ in your cache folder, e.g. ~/.cache/plat]
    #[arg(long, env = "PLAT_CACHE_DIR", value_name = "PATH")]
    cache_dir: Option<PathBuf>,
}

/// A built function: its module, and for TypeScript the engine it links
/// against.
struct Built {
    module: Vec<u8>,
    engine: Option<Vec<u8>>,
}

pub async fn run(context: &Context, test: Test) -> anyhow::Result<()> {
    let function = FunctionDir::load(&test.dir.path())?;
    let input = match &test.input {
        Some(argument) => input::read(argument)?,
        None => default_input(&function)?,
    };
    let cache_dir = match test.cache_dir {
        Some(dir) => dir,
        None => dirs::cache_dir()
            .map(|dir| dir.join("plat"))
            .context("cannot tell where your cache folder is (no HOME?); set PLAT_CACHE_DIR")?,
    };
    let language = function.manifest.language;
    let entry = shown(&function.entry_path);
    let progress = |text: String| {
        if !context.json() {
            eprintln!("{text}");
        }
    };

    progress(format!("compiling {entry} ({})…", language.as_str()));
    let started = Instant::now();
    let built = match compile(&function, &cache_dir).await? {
        Ok(built) => built,
        Err(compile_error) => {
            let annotated = source_location::annotate(
                &compile_error,
                language.compiler_file_name(),
                &function.source,
                &entry,
            );
            if context.json() {
                crate::output::print_json(&json!({
                    "status": "FAILED",
                    "output": null,
                    "logs": "",
                    "durationMs": null,
                    "error": {"type": "COMPILE_ERROR", "message": compile_error},
                }));
            } else {
                eprintln!("{annotated}");
            }
            return Err(FunctionFailed(format!("{entry} does not compile")).into());
        }
    };
    progress(format!(
        "compiled in {:.1} s; running…",
        started.elapsed().as_secs_f64()
    ));

    let limits = RunLimits::from(&function.manifest.execution_config.resolved());
    if function.manifest.environment.is_some() && !context.json() {
        eprintln!(
            "warning: the environment in function.json lives on the server; its variables are not set here"
        );
    }
    let input_bytes = serde_json::to_vec(&input)?;
    let outcome =
        tokio::task::spawn_blocking(move || execute(&cache_dir, &built, &input_bytes, &limits))
            .await
            .context("the run's thread died")??;
    report::finished_run(context, &as_execution(outcome), "local run")
}

/// The folder's `input.json` when there is one, else `null`.
fn default_input(function: &FunctionDir) -> anyhow::Result<Value> {
    let path = function.dir.join("input.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            input::parse(&text).with_context(|| format!("{} is not valid JSON", path.display()))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Value::Null),
        Err(error) => Err(anyhow::Error::new(error).context(format!("reading {}", path.display()))),
    }
}

/// Builds the function as the compiler worker would, with the built-in
/// dependency policy. The outer error is ours (no toolchain, a broken
/// sandbox); the inner one is the user's compile error, as the platform
/// would report it.
async fn compile(
    function: &FunctionDir,
    cache_dir: &std::path::Path,
) -> anyhow::Result<Result<Built, String>> {
    let toolchains = Toolchains::prepare(cache_dir).await.context(
        "preparing the toolchains (the first time builds serde and serde_json from crates.io)",
    )?;
    let policy = PolicySource::new(None)
        .context("loading the built-in dependency policy")?
        .current();
    let manifest = &function.manifest;
    let request = BuildRequest {
        language: manifest.language.into(),
        source: &function.source,
        dependencies: &manifest.dependencies,
        locked: None,
    };
    // Boxed: the build's future (resolution, bundling, the compile) is deep
    // enough to overflow the compiler's layout query limit in `main`.
    let output = Box::pin(toolchains.build(request, &policy, &CompileLimits::default())).await;
    let engine = toolchains.typescript.engine().1;
    match output.result {
        Ok(built) => Ok(Ok(Built {
            engine: built.engine_sha256.map(|_| engine.to_vec()),
            module: built.module,
        })),
        Err(CompileFailure::User(message)) => Ok(Err(message)),
        Err(CompileFailure::Infra(error)) => {
            Err(anyhow::Error::new(error).context("the compiler could not run"))
        }
    }
}

/// Loads and runs the module once, as an executor would (blocking).
fn execute(
    cache_dir: &std::path::Path,
    built: &Built,
    input: &[u8],
    limits: &RunLimits,
) -> anyhow::Result<RunOutcome> {
    let module_cache = cache_dir.join("module-cache");
    let runtime = Runtime::with_disk_cache(Some(module_cache.as_path()))
        .context("starting the WebAssembly runtime")?;
    let module = match &built.engine {
        Some(engine) => {
            let engine = runtime
                .load_engine(engine)
                .context("loading the JavaScript engine")?;
            runtime.load_linked(&built.module, Arc::new(engine))
        }
        None => runtime.load(&built.module),
    }
    .context("loading the compiled module")?;
    Ok(runtime.run(&module, input, limits))
}

/// The run in the API's execution shape, so it prints like one.
fn as_execution(outcome: RunOutcome) -> Value {
    let duration_ms = u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX);
    let (status, output, error) = match outcome.result {
        // The runtime validated it as JSON.
        Ok(text) => (
            "SUCCEEDED",
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            Value::Null,
        ),
        Err(failure) => (
            "FAILED",
            Value::Null,
            json!({"type": failure.kind.as_str(), "message": failure.message}),
        ),
    };
    json!({
        "status": status,
        "output": output,
        "error": error,
        "logs": outcome.logs,
        "logsTruncated": outcome.logs_truncated,
        "durationMs": duration_ms,
    })
}
