//! Warm instantiate + run of the echo guest. Measure in release:
//! `cargo test -p plat-worker-executor --release -- --ignored --nocapture warm_echo`

use std::time::{Duration, Instant};

use super::{limits, runtime, short_timeout, ALLOC_BOMB, ECHO, RECURSION, SLEEPER, SPIN};
use crate::runtime::RunLimits;

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
