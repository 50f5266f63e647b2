//! What a function's first run costs: through the platform (the executor
//! loads the module from the database and compiles it with Cranelift), and
//! the bare run of a loaded module in the runtime, with no database at all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use plat_worker_executor::runtime::{spawn_run_thread, LoadedModule, RunLimits, Runtime};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::options::Scale;
use crate::platform::Platform;
use crate::report::Group;
use crate::sources;
use crate::stats::Samples;

/// Warm calls after the cold one; their median is the warm time.
const WARM_CALLS: usize = 20;
/// Runs before the measured ones (first runs fault in memory and code).
const WARMUP_RUNS: usize = 100;

pub async fn run(
    platform: &mut Platform,
    scale: &Scale,
    notes: &mut Vec<String>,
) -> anyhow::Result<Group> {
    let mut group = Group::new("cold_start");
    // One executor, so exactly one call is cold: with two, the second
    // executor's first call of the version would be cold too.
    let executor = platform.start_executors(1).await?;
    // Rust first: its build takes seconds, long enough for the new executor
    // to finish preloading the JavaScript engine before any call is timed.
    let rust = platform
        .ready_function("cold-rust", "rust", sources::COLD_ECHO_RUST)
        .await?;
    let (cold, warm) = cold_and_warm(platform, rust, &json!({ "n": 1 })).await?;
    group.push("rust_cold_ms", "Rust: first execute (cold) ms", cold);
    group.push(
        "rust_warm_p50_ms",
        format!("Rust: next {WARM_CALLS}, p50 ms"),
        warm,
    );
    let typescript = platform
        .ready_function("cold-typescript", "typescript", sources::HELLO_TS)
        .await?;
    let (cold, warm) = cold_and_warm(platform, typescript, &json!({ "name": "Ada" })).await?;
    group.push(
        "typescript_cold_ms",
        "TypeScript: first execute (cold) ms",
        cold,
    );
    group.push(
        "typescript_warm_p50_ms",
        format!("TypeScript: next {WARM_CALLS}, p50 ms"),
        warm,
    );
    executor.stop().await?;

    // The bare runtime, with nothing else running.
    let modules = Modules::read(platform, rust, typescript).await?;
    let runs = scale.runs;
    let (rust_runs, typescript_runs) =
        tokio::task::spawn_blocking(move || modules.measure(runs)).await??;
    group.push(
        "rust_run_p50_us",
        "Rust: instantiate+run p50 µs",
        rust_runs.us(50.0),
    );
    group.push(
        "rust_run_p99_us",
        "Rust: instantiate+run p99 µs",
        rust_runs.us(99.0),
    );
    group.push(
        "typescript_run_p50_us",
        "TypeScript: instantiate+run p50 µs",
        typescript_runs.us(50.0),
    );
    group.push(
        "typescript_run_p99_us",
        "TypeScript: instantiate+run p99 µs",
        typescript_runs.us(99.0),
    );
    notes.push(format!(
        "cold_start: 1 executor; cold = the first execute?wait=30 round trip of a new \
         function once READY (the executor reads the module from the database and \
         Cranelift compiles it: it is in neither its memory nor its disk cache), warm = \
         the median of the next {WARM_CALLS}. instantiate+run = Runtime::run of the same \
         modules on a run thread, no database, {runs} runs after {WARMUP_RUNS} warm-up."
    ));
    Ok(group)
}

/// The first call's round trip, and the median of the next [`WARM_CALLS`], in ms.
async fn cold_and_warm(
    platform: &Platform,
    function: Uuid,
    input: &Value,
) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    platform.api.execute_ok(function, input).await?;
    let cold = started.elapsed().as_secs_f64() * 1e3;
    let mut warm = Vec::with_capacity(WARM_CALLS);
    for _ in 0..WARM_CALLS {
        let started = Instant::now();
        platform.api.execute_ok(function, input).await?;
        warm.push(started.elapsed());
    }
    Ok((cold, Samples::new(warm).ms(50.0)))
}

/// The built modules, as the executor would read them.
struct Modules {
    rust: Vec<u8>,
    typescript: Vec<u8>,
    engine: Vec<u8>,
}

impl Modules {
    async fn read(platform: &Platform, rust: Uuid, typescript: Uuid) -> anyhow::Result<Self> {
        let rust: Vec<u8> = sqlx::query_scalar(
            "select module from function_versions where function_id = $1 and status = 'READY'",
        )
        .bind(rust)
        .fetch_one(&platform.db)
        .await?;
        let (typescript, engine): (Vec<u8>, Vec<u8>) = sqlx::query_as(
            r#"
            select v.module, e.module from function_versions v
            join js_engines e on e.sha256 = v.engine_sha256
            where v.function_id = $1 and v.status = 'READY'
            "#,
        )
        .bind(typescript)
        .fetch_one(&platform.db)
        .await?;
        Ok(Self {
            rust,
            typescript,
            engine,
        })
    }

    /// Loads both modules in a runtime of its own and times `runs` runs of
    /// each on a run thread, as the worker runs them. Blocking.
    fn measure(self, runs: usize) -> anyhow::Result<(Samples, Samples)> {
        let runtime = Arc::new(Runtime::new()?);
        let rust = runtime.load(&self.rust)?;
        let engine = Arc::new(runtime.load_engine(&self.engine)?);
        let typescript = runtime.load_linked(&self.typescript, engine)?;
        spawn_run_thread(move || {
            Ok((
                time_runs(&runtime, &rust, br#"{"n":1}"#, runs)?,
                time_runs(&runtime, &typescript, br#"{"name":"Ada"}"#, runs)?,
            ))
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("the run thread panicked"))?
    }
}

fn time_runs(
    runtime: &Runtime,
    module: &LoadedModule,
    input: &[u8],
    runs: usize,
) -> anyhow::Result<Samples> {
    let limits = RunLimits::default();
    let run = |runtime: &Runtime| -> anyhow::Result<Duration> {
        let started = Instant::now();
        let outcome = runtime.run(module, input, &limits);
        let elapsed = started.elapsed();
        outcome
            .result
            .map_err(|failure| anyhow::anyhow!("{}: {}", failure.kind, failure.message))
            .context("a benchmark run failed")?;
        Ok(elapsed)
    };
    for _ in 0..WARMUP_RUNS {
        run(runtime)?;
    }
    let samples = (0..runs)
        .map(|_| run(runtime))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Samples::new(samples))
}
