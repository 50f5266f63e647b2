//! What a TypeScript function costs: build time, the engine's one-off load,
//! and a warm run (instantiate the engine snapshot and the function module,
//! run, collect). No database. Measure in release:
//! `cargo test --release -p plat-tests --test typescript_bench -- --ignored --nocapture`
//! Results: docs/benchmarks.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plat_worker_compiler::compile::TypeScriptToolchain;
use plat_worker_executor::runtime::{self, LoadedModule, RunLimits, Runtime};

/// The issue's trivial handler: sync, no logs.
const TRIVIAL: (&str, &str, &[u8]) = (
    "trivial",
    "export default (input: { name: string }) => ({ greeting: `Hello, ${input.name}!` });\n",
    br#"{"name":"Ada"}"#,
);
/// A realistic one: async, a `console.log` per item, `reduce`.
const HELLO_TS: (&str, &str, &[u8]) = (
    "examples/hello-ts",
    include_str!("../../examples/hello-ts/handler.ts"),
    br#"{"items":[{"name":"tea","cents":350,"quantity":2}],"coupon":"TENOFF"}"#,
);

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    format!(
        "median {:.1} µs, p90 {:.1} µs, p99 {:.1} µs",
        at(50).as_secs_f64() * 1e6,
        at(90).as_secs_f64() * 1e6,
        at(99).as_secs_f64() * 1e6
    )
}

/// 1000 warm runs on a run thread (as the worker runs them; only the run is
/// timed), and the smallest memory limit the run fits in.
fn measure_runs(runtime: &Runtime, module: &LoadedModule, input: &[u8]) -> String {
    let limits = RunLimits::default();
    for _ in 0..100 {
        runtime
            .run(module, input, &limits)
            .result
            .expect("warm-up run");
    }
    let mut runs = Vec::with_capacity(1000);
    let faults_before = minor_faults();
    for _ in 0..1000 {
        let started = Instant::now();
        let outcome = runtime.run(module, input, &limits);
        runs.push(started.elapsed());
        outcome.result.expect("run");
    }
    let faults = (minor_faults() - faults_before) / 1000;
    let smallest = (1..=64)
        .find(|mib| {
            let limits = RunLimits {
                memory_bytes: mib << 20,
                ..RunLimits::default()
            };
            runtime.run(module, input, &limits).result.is_ok()
        })
        .expect("fits in 64 MiB");
    format!(
        "warm run (instantiate engine + module, run, collect), 1000 runs: {}; {faults} page faults per run; smallest memoryLimitMb: {smallest}",
        percentiles(runs)
    )
}

/// This thread's minor page faults so far (Linux `/proc/thread-self/stat`).
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("thread stat");
    // Fields after the parenthesised name; minflt is the 10th field overall.
    let after_name = &stat[stat.rfind(')').expect("name") + 2..];
    after_name
        .split(' ')
        .nth(7)
        .and_then(|f| f.parse().ok())
        .expect("minflt")
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark; run in release with --ignored --nocapture"]
async fn typescript_build_and_warm_run() {
    let started = Instant::now();
    let toolchain = TypeScriptToolchain::prepare().await.expect("prepare");
    println!(
        "prepare the toolchain (wizer + Cranelift): {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );

    let mut modules = Vec::new();
    for (name, source, input) in [TRIVIAL, HELLO_TS] {
        let mut builds = Vec::new();
        let mut built = None;
        for _ in 0..50 {
            let started = Instant::now();
            built = Some(toolchain.compile(source, None).await.expect("compiles"));
            builds.push(started.elapsed());
        }
        let built = built.unwrap();
        println!(
            "{name}: build ({} bytes of TypeScript → {} bytes of module), 50 builds: {}",
            source.len(),
            built.module.len(),
            percentiles(builds)
        );
        modules.push((name, built.module, input));
    }

    let engine_wasm = toolchain.engine().1.to_vec();
    let report = tokio::task::spawn_blocking(move || {
        let runtime = Arc::new(Runtime::new().expect("runtime"));
        let started = Instant::now();
        let engine = Arc::new(runtime.load_engine(&engine_wasm).expect("engine loads"));
        let mut report = format!(
            "load the engine (Cranelift, once per executor): {:.0} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        for (name, wasm, input) in modules {
            let started = Instant::now();
            let module = runtime
                .load_linked(&wasm, engine.clone())
                .expect("module loads");
            let load = started.elapsed();
            let runtime = runtime.clone();
            let runs = runtime::spawn_run_thread(move || measure_runs(&runtime, &module, input))
                .expect("run thread")
                .join()
                .expect("bench thread");
            report.push_str(&format!(
                "\n{name}: load the module {:.0} µs; {runs}",
                load.as_secs_f64() * 1e6
            ));
        }
        report
    })
    .await
    .expect("blocking task");
    println!("{report}");
}
