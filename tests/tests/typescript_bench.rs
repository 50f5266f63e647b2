//! What a TypeScript function costs: build time, the engine's one-off load,
//! and a warm run (instantiate the engine snapshot and the function module,
//! run, collect). No database. Measure in release:
//! `cargo test --release -p plat-tests --test typescript_bench -- --ignored --nocapture`
//! Results: docs/benchmarks.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plat_worker_compiler::compile::TypeScriptToolchain;
use plat_worker_executor::runtime::{self, RunLimits, Runtime};

const HELLO_TS: &str = include_str!("../../examples/hello-ts/handler.ts");
const INPUT: &[u8] = br#"{"items":[{"name":"tea","cents":350,"quantity":2}],"coupon":"TENOFF"}"#;

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

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark; run in release with --ignored --nocapture"]
async fn typescript_build_and_warm_run() {
    let started = Instant::now();
    let toolchain = TypeScriptToolchain::prepare().await.expect("prepare");
    println!("prepare the toolchain (wizer + Cranelift): {:.0} ms", started.elapsed().as_secs_f64() * 1e3);

    let mut builds = Vec::new();
    let mut built = None;
    for _ in 0..50 {
        let started = Instant::now();
        built = Some(toolchain.compile(HELLO_TS).await.expect("compiles"));
        builds.push(started.elapsed());
    }
    let built = built.unwrap();
    println!(
        "build examples/hello-ts ({} bytes of TypeScript → {} bytes of module), 50 builds: {}",
        HELLO_TS.len(),
        built.module.len(),
        percentiles(builds)
    );

    let (_, engine_wasm) = toolchain.engine();
    let engine_wasm = engine_wasm.to_vec();
    let module_wasm = built.module;
    let report = tokio::task::spawn_blocking(move || {
        let runtime = Arc::new(Runtime::new().expect("runtime"));
        let started = Instant::now();
        let engine = Arc::new(runtime.load_engine(&engine_wasm).expect("engine loads"));
        let engine_load = started.elapsed();
        let started = Instant::now();
        let module = runtime.load_linked(&module_wasm, engine).expect("module loads");
        let module_load = started.elapsed();

        // On a run thread, as the worker runs them: only the run is timed.
        runtime::spawn_run_thread(move || {
            let limits = RunLimits::default();
            for _ in 0..100 {
                runtime.run(&module, INPUT, &limits).result.expect("warm-up run");
            }
            let mut runs = Vec::with_capacity(1000);
            for _ in 0..1000 {
                let started = Instant::now();
                let outcome = runtime.run(&module, INPUT, &limits);
                runs.push(started.elapsed());
                outcome.result.expect("run");
            }
            // The smallest memory limit a run fits in: the engine's own
            // footprint plus this handler's.
            let smallest = (1..=64)
                .find(|mib| {
                    let limits = RunLimits { memory_bytes: mib << 20, ..RunLimits::default() };
                    runtime.run(&module, INPUT, &limits).result.is_ok()
                })
                .expect("fits in 64 MiB");
            format!(
                "load the engine (Cranelift, once per executor): {:.0} ms\n\
                 load a function module: {:.0} µs\n\
                 warm run (instantiate engine + module, run, collect), 1000 runs: {}\n\
                 smallest memoryLimitMb that runs it: {smallest}",
                engine_load.as_secs_f64() * 1e3,
                module_load.as_secs_f64() * 1e6,
                percentiles(runs)
            )
        })
        .expect("run thread")
        .join()
        .expect("bench thread")
    })
    .await
    .expect("blocking task");
    println!("{report}");
}
