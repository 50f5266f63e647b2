//! Warm instantiate + run of the echo guest, and loading a module with and
//! without the disk cache. Measure in release:
//! `cargo test -p plat-worker-executor --release -- --ignored --nocapture warm_echo`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{limits, runtime, short_timeout, ALLOC_BOMB, ECHO, RECURSION, SLEEPER, SPIN};
use crate::runtime::{RunLimits, Runtime};

#[test]
#[ignore = "benchmark; run in release with --ignored --nocapture"]
fn warm_echo_instantiate_and_run_median() {
    // On a run thread, as the worker runs them: no thread start per run.
    crate::runtime::spawn_run_thread(warm_echo)
        .expect("run thread")
        .join()
        .expect("benchmark thread");
}

fn warm_echo() {
    let input = br#"{"hello":"world","n":42}"#;
    let module = ECHO.module();
    let limits = limits();
    for _ in 0..100 {
        runtime()
            .run(module, input, &limits)
            .result
            .expect("warm-up run");
    }

    let mut wall: Vec<Duration> = Vec::with_capacity(1000);
    let mut reported: Vec<Duration> = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let started = Instant::now();
        let outcome = runtime().run(module, input, &limits);
        wall.push(started.elapsed());
        reported.push(outcome.duration);
        outcome.result.expect("echo run");
    }
    wall.sort();
    reported.sort();
    let pct =
        |v: &[Duration], p: usize| v[(v.len() * p / 100).min(v.len() - 1)].as_secs_f64() * 1e6;
    println!(
        "warm echo, 1000 runs: run() wall median {:.1} µs (p90 {:.1}, p99 {:.1}); RunOutcome.duration median {:.1} µs",
        pct(&wall, 50),
        pct(&wall, 90),
        pct(&wall, 99),
        pct(&reported, 50)
    );
}

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn how_long_limits_take_to_stop_a_run() {
    let oom = RunLimits {
        memory_bytes: 128 << 20,
        ..limits()
    };
    let cases = [
        ("spin, 300 ms timeout", SPIN.run("null", &short_timeout())),
        (
            "sleep 60 s, 300 ms timeout",
            SLEEPER.run("60000", &short_timeout()),
        ),
        ("1 GiB alloc, 128 MiB limit", ALLOC_BOMB.run("null", &oom)),
        ("deep recursion", RECURSION.run("null", &limits())),
    ];
    for (name, outcome) in cases {
        let kind = outcome.result.expect_err("a limit stops it").kind;
        println!(
            "{name}: {kind} after {:.1} ms",
            outcome.duration.as_secs_f64() * 1e3
        );
    }
}

/// `Runtime::load` (or `load_engine`) compiling with Cranelift versus reading
/// the disk cache (a warm page cache: what a restarted executor sees). The
/// echo guest always; add any module with `PLAT_BENCH_WASM` and a JavaScript
/// engine build with `PLAT_BENCH_ENGINE_WASM` (paths to `.wasm` files):
/// `PLAT_BENCH_ENGINE_WASM=… cargo test -p plat-worker-executor --release -- --ignored --nocapture load_compiled`
#[test]
#[ignore = "benchmark; run in release with --ignored --nocapture"]
fn load_compiled_vs_from_the_disk_cache() {
    let from_env = |var: &str| {
        std::env::var_os(var).map(|path| {
            let path = PathBuf::from(path);
            let wasm = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.display().to_string(), wasm)
        })
    };
    let mut cases = vec![("echo guest".to_owned(), ECHO.wasm().to_vec(), false)];
    cases.extend(from_env("PLAT_BENCH_WASM").map(|(name, wasm)| (name, wasm, false)));
    cases.extend(from_env("PLAT_BENCH_ENGINE_WASM").map(|(name, wasm)| (name, wasm, true)));

    for (name, wasm, is_engine) in cases {
        let load = |runtime: &Runtime| {
            let started = Instant::now();
            if is_engine {
                runtime.load_engine(&wasm).map(drop)
            } else {
                runtime.load(&wasm).map(drop)
            }
            .expect("loads");
            started.elapsed()
        };
        let median = |runtime: &Runtime, times: usize| {
            let mut all: Vec<Duration> = (0..times).map(|_| load(runtime)).collect();
            all.sort();
            all[all.len() / 2].as_secs_f64() * 1e3
        };
        let compiled = median(&Runtime::new().expect("runtime"), 5);
        // Compiling and writing the file: a new empty folder each time.
        let mut first: Vec<Duration> = (0..3)
            .map(|_| {
                let dir = tempfile::tempdir().expect("tempdir");
                load(&Runtime::with_disk_cache(Some(dir.path())).expect("runtime"))
            })
            .collect();
        first.sort();
        let first = first[1].as_secs_f64() * 1e3;
        let dir = tempfile::tempdir().expect("tempdir");
        let cached = Runtime::with_disk_cache(Some(dir.path())).expect("runtime");
        load(&cached);
        let from_disk = median(&cached, 21);
        // The slowest of several fresh runtimes: nothing is shared between
        // them but the file.
        let fresh = (0..5)
            .map(|_| load(&Runtime::with_disk_cache(Some(dir.path())).expect("runtime")))
            .max()
            .expect("five loads")
            .as_secs_f64()
            * 1e3;

        let cwasm_bytes: u64 = std::fs::read_dir(dir.path())
            .expect("cache folder")
            .map(|entry| entry.expect("entry").metadata().expect("metadata").len())
            .sum();
        println!(
            "{name}: {} KiB wasm, {} KiB cache file; load compiling (median of 5) {compiled:.1} ms; \
             first load with the cache (compile + write, median of 3) {first:.1} ms; \
             load from the cache (median of 21) {from_disk:.2} ms, in a fresh runtime (max of 5) {fresh:.2} ms",
            wasm.len() / 1024,
            cwasm_bytes / 1024,
        );
    }
}
