//! Real guests in real wasmtime. Rust guests are compiled once per test binary
//! with plain `rustc --target wasm32-wasip1`; WAT covers ABI corners.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::*;

mod bench;
mod disk_cache;

/// One `Runtime` per test binary, as in production: every test also exercises
/// sharing it between threads.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new().expect("runtime"))
}

struct Guest {
    name: &'static str,
    source: &'static str,
    wasm: OnceLock<Vec<u8>>,
    module: OnceLock<LoadedModule>,
}

impl Guest {
    const fn new(name: &'static str, source: &'static str) -> Self {
        Self {
            name,
            source,
            wasm: OnceLock::new(),
            module: OnceLock::new(),
        }
    }

    fn wasm(&self) -> &[u8] {
        self.wasm
            .get_or_init(|| compile_rust_guest(self.name, self.source))
    }

    fn module(&self) -> &LoadedModule {
        self.module
            .get_or_init(|| runtime().load(self.wasm()).expect("load guest"))
    }

    fn run(&self, input: &str, limits: &RunLimits) -> RunOutcome {
        runtime().run(self.module(), input.as_bytes(), limits)
    }
}

fn compile_rust_guest(name: &str, source: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join(format!("{name}.rs"));
    let out = dir.path().join(format!("{name}.wasm"));
    std::fs::write(&src, source).expect("write guest source");
    let output = Command::new("rustc")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "--edition",
            "2021",
            "--target",
            "wasm32-wasip1",
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
        ])
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .output()
        .expect("run rustc");
    assert!(
        output.status.success(),
        "compiling guest {name} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(Path::new(&out)).expect("read guest wasm")
}

static ECHO: Guest = Guest::new("echo", include_str!("guests/echo.rs"));
static SPIN: Guest = Guest::new("spin", include_str!("guests/spin.rs"));
static ALLOC_BOMB: Guest = Guest::new("alloc_bomb", include_str!("guests/alloc_bomb.rs"));
static RECURSION: Guest = Guest::new("recursion", include_str!("guests/recursion.rs"));
static EXIT3: Guest = Guest::new("exit3", include_str!("guests/exit3.rs"));
static HUGE_OUTPUT: Guest = Guest::new("huge_output", include_str!("guests/huge_output.rs"));
static CHATTY: Guest = Guest::new("chatty", include_str!("guests/chatty.rs"));
static NOT_JSON: Guest = Guest::new("not_json", include_str!("guests/not_json.rs"));
static PROBE: Guest = Guest::new("probe", include_str!("guests/probe.rs"));
static CONTRACT: Guest = Guest::new("contract", include_str!("guests/contract.rs"));
static SLEEPER: Guest = Guest::new("sleeper", include_str!("guests/sleeper.rs"));

fn limits() -> RunLimits {
    RunLimits {
        timeout: Duration::from_secs(10),
        ..RunLimits::default()
    }
}

fn short_timeout() -> RunLimits {
    RunLimits {
        timeout: Duration::from_millis(300),
        ..RunLimits::default()
    }
}

fn failure(outcome: &RunOutcome) -> &RunFailure {
    outcome.result.as_ref().expect_err("the run should fail")
}

fn wat_module(wat: &str) -> LoadedModule {
    runtime()
        .load(&wat::parse_str(wat).expect("valid wat"))
        .expect("load wat module")
}

#[test]
fn echo_returns_the_input_json_text_unchanged() {
    let input = r#"{"name":"Ada","tags":["x", "y"],"n":1.50}"#;

    let outcome = ECHO.run(input, &limits());

    assert_eq!(outcome.result, Ok(input.to_owned()));
    assert_eq!(outcome.logs, "");
    assert!(!outcome.logs_truncated);
}

#[test]
fn empty_input_reaches_the_guest_as_empty_stdin() {
    let outcome = ECHO.run("", &limits());

    assert_eq!(outcome.result, Ok("null".to_owned()));
}

#[test]
fn an_infinite_loop_is_stopped_as_a_timeout() {
    let outcome = SPIN.run("null", &short_timeout());

    assert_eq!(
        failure(&outcome),
        &RunFailure {
            kind: ErrorKind::Timeout,
            message: "execution exceeded the 300 ms timeout".into()
        }
    );
}

#[test]
fn sleeping_past_the_deadline_is_a_timeout_not_a_blocked_thread() {
    let outcome = SLEEPER.run("60000", &short_timeout());

    // Reaching this line at all proves the guest's minute was not slept out
    // (the suite would hang); the outcome says the deadline ended it.
    assert_eq!(failure(&outcome).kind, ErrorKind::Timeout);
}

#[test]
fn a_short_sleep_completes_and_the_guest_clock_measures_it() {
    let outcome = SLEEPER.run("30", &limits());

    let measured: u64 = outcome
        .result
        .expect("sleep succeeds")
        .parse()
        .expect("a number");
    assert!(measured >= 30, "guest measured {measured} ms");
}

#[test]
fn a_1_gib_allocation_under_a_128_mib_limit_is_out_of_memory() {
    let limits = RunLimits {
        memory_bytes: 128 << 20,
        ..limits()
    };

    let outcome = ALLOC_BOMB.run("null", &limits);

    assert_eq!(
        failure(&outcome),
        &RunFailure {
            kind: ErrorKind::OutOfMemory,
            message: "memory limit of 128 MiB exceeded".into()
        }
    );
    // Rust's alloc-error handler says what happened on stderr; it stays visible.
    assert!(
        outcome
            .logs
            .contains("memory allocation of 1073741824 bytes failed"),
        "{}",
        outcome.logs
    );
}

#[test]
fn initial_memory_over_the_limit_is_out_of_memory() {
    // 3000 pages = 187.5 MiB.
    let module = wat_module(r#"(module (memory (export "memory") 3000) (func (export "_start")))"#);
    let limits = RunLimits {
        memory_bytes: 128 << 20,
        ..limits()
    };

    let outcome = runtime().run(&module, b"", &limits);

    assert_eq!(failure(&outcome).kind, ErrorKind::OutOfMemory);
}

#[test]
fn deep_recursion_is_a_stack_overflow_trap() {
    let outcome = RECURSION.run("null", &limits());

    assert_eq!(
        failure(&outcome),
        &RunFailure {
            kind: ErrorKind::Trap,
            message: "stack overflow".into()
        }
    );
}

#[test]
fn other_traps_carry_wasmtimes_description_only() {
    let module =
        wat_module(r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#);

    let outcome = runtime().run(&module, b"", &limits());

    assert_eq!(
        failure(&outcome),
        &RunFailure {
            kind: ErrorKind::Trap,
            message: "wasm `unreachable` instruction executed".into()
        }
    );
}

#[test]
fn an_access_that_wrapped_below_address_zero_is_a_stack_overflow() {
    // What a shadow stack that ran past its bottom does: store at sp - 8 with
    // sp = 0 wraps to the top of the address space.
    let wrapped = wat_module(
        r#"(module (memory (export "memory") 1)
             (func (export "_start") (i64.store (i32.sub (i32.const 0) (i32.const 8)) (i64.const 1))))"#,
    );
    // An ordinary out-of-bounds access keeps wasmtime's description.
    let beyond = wat_module(
        r#"(module (memory (export "memory") 1)
             (func (export "_start") (drop (i32.load (i32.const 0x20000)))))"#,
    );

    let wrapped = runtime().run(&wrapped, b"", &limits());
    let beyond = runtime().run(&beyond, b"", &limits());

    assert_eq!(
        failure(&wrapped),
        &RunFailure {
            kind: ErrorKind::Trap,
            message: "stack overflow".into()
        }
    );
    assert_eq!(
        failure(&beyond),
        &RunFailure {
            kind: ErrorKind::Trap,
            message: "out of bounds memory access".into()
        }
    );
}

#[test]
fn process_exit_with_a_code_is_reported_as_exit() {
    let outcome = EXIT3.run("null", &limits());

    assert_eq!(
        failure(&outcome),
        &RunFailure {
            kind: ErrorKind::Exit,
            message: "function exited with code 3".into()
        }
    );
}

#[test]
fn exit_codes_of_126_and_above_are_exits_too() {
    // wasmtime-wasi alone would make these an untyped error (a TRAP).
    let module = wat_module(
        r#"(module
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (func (export "_start") (call $exit (i32.const 200))))"#,
    );

    let outcome = runtime().run(&module, b"", &limits());

    assert_eq!(
        failure(&outcome),
        &RunFailure {
            kind: ErrorKind::Exit,
            message: "function exited with code 200".into()
        }
    );
}

#[test]
fn no_run_sees_what_an_earlier_run_left_in_its_memory_or_table() {
    // Pool slots are reset in place between runs, not handed back to the
    // kernel (engine.rs). Each run checks that its memory and its table
    // start empty, then leaves a mark in both; more runs than the pool has
    // slots (two per concurrent run), so slots are reused whatever the
    // allocator's affinity.
    let module = wat_module(
        r#"(module
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (table $t 1000 100000 funcref)
          (func $f)
          (elem declare func $f)
          (func (export "_start")
            (if (i32.load (i32.const 1024)) (then (call $exit (i32.const 202))))
            (if (i32.eqz (ref.is_null (table.get $t (i32.const 900))))
              (then (call $exit (i32.const 203))))
            (i32.store (i32.const 1024) (i32.const 1))
            (table.set $t (i32.const 900) (ref.func $f))
            (call $exit (i32.const 201))))"#,
    );

    for run in 0..(2 * MAX_CONCURRENT_RUNS + 100) {
        let outcome = runtime().run(&module, b"", &limits());

        assert_eq!(
            failure(&outcome).message,
            "function exited with code 201",
            "run {run}: 202 means memory, 203 a table entry, left by an earlier run"
        );
    }
}

#[test]
fn output_over_the_cap_is_invalid_output() {
    let outcome = HUGE_OUTPUT.run("null", &limits());

    assert_eq!(
        failure(&outcome),
        &RunFailure {
            kind: ErrorKind::InvalidOutput,
            message: "output exceeds 1048576 bytes".into()
        }
    );
}

#[test]
fn logs_over_the_cap_are_truncated_and_the_run_still_succeeds() {
    let outcome = CHATTY.run("null", &limits());

    assert_eq!(outcome.result, Ok("\"done\"".to_owned()));
    assert!(outcome.logs_truncated);
    assert!(
        outcome.logs.starts_with("0000 éé"),
        "{}",
        &outcome.logs[..40]
    );
    assert!(outcome.logs.ends_with("\n[logs truncated at 65536 bytes]"));
    assert!(
        !outcome.logs.contains('\u{fffd}'),
        "a character was cut in half"
    );
    assert!(outcome.logs.len() <= 65536 + "\n[logs truncated at 65536 bytes]".len());
}

#[test]
fn text_that_is_not_json_on_stdout_is_invalid_output() {
    let outcome = NOT_JSON.run("null", &limits());

    let failure = failure(&outcome);
    assert_eq!(failure.kind, ErrorKind::InvalidOutput);
    assert!(
        failure
            .message
            .starts_with("function output is not valid JSON: "),
        "{failure:?}"
    );
    assert!(failure.message.contains("eprintln!"), "{failure:?}");
}

#[test]
fn the_contracts_exit_codes_become_the_right_error_kinds() {
    let cases = [
        ("\"error\"", ErrorKind::HandlerError, "something went wrong"),
        (
            "42",
            ErrorKind::InvalidInput,
            "invalid input: expected a string",
        ),
        ("\"panic\"", ErrorKind::Panic, "the handler panicked"),
    ];
    for (input, kind, message) in cases {
        let outcome = CONTRACT.run(input, &limits());

        let failure = failure(&outcome);
        assert_eq!(failure.kind, kind, "input {input}");
        assert!(
            failure.message.contains(message),
            "input {input}: {failure:?}"
        );
    }
    assert_eq!(
        CONTRACT.run("\"hi\"", &limits()).result,
        Ok("\"hi\"".to_owned())
    );
}

#[test]
fn the_guest_sees_only_the_given_env_no_files_no_network_and_argv_handler() {
    let without = PROBE.run("null", &limits());
    let with = PROBE.run(
        "null",
        &RunLimits {
            env: vec![("GREETING".into(), "hello \"world\"".into())],
            ..limits()
        },
    );

    assert_eq!(
        without.result,
        Ok(
            r#"{"greeting":null,"env_count":0,"args":["handler"],"file":false,"net":false}"#
                .to_owned()
        )
    );
    assert_eq!(
        with.result,
        Ok(r#"{"greeting":"hello \"world\"","env_count":1,"args":["handler"],"file":false,"net":false}"#.to_owned())
    );
}

#[test]
fn a_looping_and_a_well_behaved_run_on_two_threads_each_get_their_outcome() {
    // Compile first so both threads start running at about the same time.
    let (_, _) = (ECHO.module(), SPIN.module());

    let (looping, echoing) = std::thread::scope(|scope| {
        let looping = scope.spawn(|| SPIN.run("null", &short_timeout()));
        let echoing = scope.spawn(|| {
            (0..50)
                .map(|i| ECHO.run(&i.to_string(), &limits()))
                .collect::<Vec<_>>()
        });
        (
            looping.join().expect("looping thread"),
            echoing.join().expect("echo thread"),
        )
    });

    assert_eq!(failure(&looping).kind, ErrorKind::Timeout);
    for (i, outcome) in echoing.iter().enumerate() {
        assert_eq!(outcome.result, Ok(i.to_string()));
    }
}

#[test]
fn poll_oneoff_reports_ready_descriptors_without_sleeping() {
    // Subscriptions at 0: fd_write on stdout, fd_read on fd 7 (not open), and
    // a one-hour clock. Expect 2 events at once: stdout ok, fd 7 badf (8).
    // The exit code encodes: 1000 * errno(call) + 100 * nevents + 10 *
    // event0.error + event1.error.
    let module = wat_module(
        r#"(module
          (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            (local $errno i32)
            ;; sub 0 @0: userdata 1, fd_write (2), fd 1
            (i64.store (i32.const 0) (i64.const 1))
            (i32.store8 (i32.const 8) (i32.const 2))
            (i32.store (i32.const 16) (i32.const 1))
            ;; sub 1 @48: userdata 2, fd_read (1), fd 7
            (i64.store (i32.const 48) (i64.const 2))
            (i32.store8 (i32.const 56) (i32.const 1))
            (i32.store (i32.const 64) (i32.const 7))
            ;; sub 2 @96: userdata 3, clock (0), monotonic (1), 1 h relative
            (i64.store (i32.const 96) (i64.const 3))
            (i32.store8 (i32.const 104) (i32.const 0))
            (i32.store (i32.const 112) (i32.const 1))
            (i64.store (i32.const 120) (i64.const 3600000000000))
            ;; events @1024, nevents @2048
            (local.set $errno (call $poll (i32.const 0) (i32.const 1024) (i32.const 3) (i32.const 2048)))
            (call $exit
              (i32.add
                (i32.add (i32.mul (local.get $errno) (i32.const 1000))
                         (i32.mul (i32.load (i32.const 2048)) (i32.const 100)))
                (i32.add (i32.mul (i32.load16_u (i32.const 1032)) (i32.const 10))
                         (i32.load16_u (i32.const 1064)))))))"#,
    );

    let outcome = runtime().run(&module, b"", &short_timeout());

    assert_eq!(failure(&outcome).message, "function exited with code 208");
}

#[test]
fn modules_that_are_not_wasi_commands_are_rejected_at_load() {
    let no_start = wat::parse_str(r#"(module (memory (export "memory") 1))"#).expect("wat");
    let foreign_import =
        wat::parse_str(r#"(module (import "env" "f" (func)) (memory (export "memory") 1) (func (export "_start")))"#)
            .expect("wat");

    let no_start = runtime().load(&no_start).expect_err("no _start");
    let foreign_import = runtime().load(&foreign_import).expect_err("unknown import");

    assert!(format!("{no_start:#}").contains("_start"), "{no_start:#}");
    assert!(
        format!("{foreign_import:#}").contains("env"),
        "{foreign_import:#}"
    );
    assert!(
        runtime().load(b"(module)").is_err(),
        "the text format is not accepted"
    );
}

#[test]
fn a_module_from_another_runtime_is_refused_not_run_without_a_timeout() {
    let other = Runtime::new().expect("second runtime");
    let module = other
        .load(
            &wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)
                .expect("wat"),
        )
        .expect("load");

    let outcome = runtime().run(&module, b"", &limits());

    assert_eq!(failure(&outcome).kind, ErrorKind::ModuleError);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_from_spawn_blocking_inside_a_tokio_runtime() {
    // The worker's real calling pattern: WASI host calls enter the ambient
    // runtime from the blocking thread, which must not deadlock or panic.
    let module = ECHO.module();

    let outcome = tokio::task::spawn_blocking(move || runtime().run(module, b"[1,2,3]", &limits()))
        .await
        .expect("blocking task");

    assert_eq!(outcome.result, Ok("[1,2,3]".to_owned()));
}

/// Runs `guest` with a one-minute timeout on another thread and cancels it
/// from this one once it has started.
fn run_and_cancel(guest: &'static Guest, input: &'static str) -> RunOutcome {
    let cancel = CancelFlag::new();
    let flag = cancel.clone();
    let module = guest.module();
    let running = std::thread::spawn(move || {
        let limits = RunLimits {
            timeout: Duration::from_secs(60),
            ..RunLimits::default()
        };
        runtime().run_cancellable(module, input.as_bytes(), &limits, &flag)
    });
    std::thread::sleep(Duration::from_millis(100));
    cancel.cancel();
    running.join().expect("the run's thread")
}

#[test]
fn cancelling_a_spinning_run_stops_it_as_cancelled_not_at_its_timeout() {
    let outcome = run_and_cancel(&SPIN, "null");

    assert_eq!(
        failure(&outcome),
        &RunFailure {
            kind: ErrorKind::Cancelled,
            message: "cancelled while running".into()
        }
    );
}

#[test]
fn cancelling_a_sleeping_run_wakes_it() {
    let outcome = run_and_cancel(&SLEEPER, "60000");

    assert_eq!(failure(&outcome).kind, ErrorKind::Cancelled);
}

#[test]
fn a_run_that_is_never_cancelled_is_unaffected_by_the_flag() {
    let outcome = runtime().run_cancellable(ECHO.module(), b"[1]", &limits(), &CancelFlag::new());

    assert_eq!(outcome.result, Ok("[1]".to_owned()));
}
