//! Turning how a run ended into the module contract's result.
//!
//! Contract (fixed; the compiler's generated `main` produces it): exit 0 →
//! stdout is the output JSON; 1 → handler error, message on stdout; 65 →
//! invalid input; 101 → panic; 74 → writing stdout failed (our cap); any other
//! code → the function called `exit(n)`.

use std::time::Duration;

use plat_common::json_depth::{nesting_depth, MAX_JSON_DEPTH};
use serde_json::value::RawValue;
use wasmtime::Trap;
use wasmtime_wasi::I32Exit;

use super::limits::{Refusals, MAX_TABLE_ELEMENTS};
use super::logs::CapturedLogs;
use super::poll::{Cancelled, DeadlineExceeded};
use super::{ErrorKind, RunFailure};

const EXIT_OK: i32 = 0;
const EXIT_HANDLER_ERROR: i32 = 1;
const EXIT_INVALID_INPUT: i32 = 65;
const EXIT_OUTPUT_FAILED: i32 = 74;
const EXIT_PANIC: i32 = 101;

/// Everything about a finished run that decides its result.
pub(crate) struct Ended {
    /// `_start`'s result (or instantiation's error).
    pub(crate) result: wasmtime::Result<()>,
    pub(crate) stdout: Vec<u8>,
    pub(crate) refusals: Refusals,
    pub(crate) timeout: Duration,
    pub(crate) memory_bytes: usize,
    pub(crate) max_output_bytes: usize,
}

pub(crate) fn classify(ended: Ended) -> Result<String, RunFailure> {
    let code = match &ended.result {
        Ok(()) => EXIT_OK,
        Err(error) => match error.downcast_ref::<I32Exit>() {
            Some(I32Exit(code)) => *code,
            None => return Err(classify_error(error, &ended)),
        },
    };
    let message = || {
        let text = String::from_utf8_lossy(&ended.stdout);
        text.trim().to_owned()
    };
    let or = |message: String, fallback: &str| {
        if message.is_empty() {
            fallback.to_owned()
        } else {
            message
        }
    };
    match code {
        EXIT_OK => output(ended.stdout, ended.max_output_bytes),
        // A JavaScript engine reports a refused allocation as an exception
        // ("out of memory"), which ends as a handler error.
        EXIT_HANDLER_ERROR if ended.refusals.memory => Err(out_of_memory(ended.memory_bytes)),
        EXIT_HANDLER_ERROR => Err(failure(
            ErrorKind::HandlerError,
            or(message(), "handler returned an error"),
        )),
        EXIT_INVALID_INPUT => Err(failure(
            ErrorKind::InvalidInput,
            or(message(), "invalid input"),
        )),
        EXIT_OUTPUT_FAILED => Err(output_too_large(ended.max_output_bytes)),
        // A panic after refused memory growth is almost always the refusal
        // surfacing (`try_reserve(..).expect(..)`, `Vec` capacity checks).
        EXIT_PANIC if ended.refusals.memory => Err(out_of_memory(ended.memory_bytes)),
        EXIT_PANIC => Err(failure(
            ErrorKind::Panic,
            or(message(), "function panicked"),
        )),
        n => Err(failure(
            ErrorKind::Exit,
            format!("function exited with code {n}"),
        )),
    }
}

fn classify_error(error: &wasmtime::Error, ended: &Ended) -> RunFailure {
    if error.is::<Cancelled>() {
        return failure(ErrorKind::Cancelled, "cancelled while running".to_owned());
    }
    let trap = error.downcast_ref::<Trap>().copied();
    if trap == Some(Trap::Interrupt) || error.is::<DeadlineExceeded>() {
        return failure(
            ErrorKind::Timeout,
            format!(
                "execution exceeded the {} ms timeout",
                ended.timeout.as_millis()
            ),
        );
    }
    // Checked before the trap kind: a refused `memory.grow` typically ends in
    // `unreachable` (Rust's alloc-error handler aborts), and a module whose
    // initial memory is over the limit fails to instantiate.
    if ended.refusals.memory {
        return out_of_memory(ended.memory_bytes);
    }
    if ended.refusals.table {
        return failure(
            ErrorKind::OutOfMemory,
            format!("table limit of {MAX_TABLE_ELEMENTS} elements exceeded"),
        );
    }
    let message = match trap {
        Some(Trap::StackOverflow) => "stack overflow".to_owned(),
        Some(Trap::MemoryOutOfBounds) if fault_wrapped_below_zero(error) => {
            "stack overflow".to_owned()
        }
        Some(trap) => {
            let text = trap.to_string();
            text.strip_prefix("wasm trap: ").unwrap_or(&text).to_owned()
        }
        // Not a wasm trap: a host call failed fatally. The root cause is the
        // host's own message; the outer layers (wasm backtrace, contexts) are
        // dropped so nothing about the host leaks.
        None => error.root_cause().to_string(),
    };
    failure(ErrorKind::Trap, message)
}

/// Whether an out-of-bounds access hit the top of the 32-bit address space:
/// the shadow stack (the C/Rust stack in linear memory, below the data at
/// address 0 in modules built by rustc and clang) ran past its bottom and
/// wrapped. Neither Rust nor QuickJS check it (QuickJS has no stack limit on
/// WASI), so that is how their deep recursion ends when the shadow stack runs
/// out before wasmtime's native one. wasmtime adds the fault as context
/// ("memory fault at wasm address 0x…") when it knows the address.
fn fault_wrapped_below_zero(error: &wasmtime::Error) -> bool {
    const PREFIX: &str = "memory fault at wasm address 0x";
    // Any frame larger than this would be far beyond every stack we build.
    const WRAP_ZONE: u64 = 1 << 28;
    error.chain().any(|cause| {
        let text = cause.to_string();
        text.strip_prefix(PREFIX)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .is_some_and(|address| address >= (1 << 32) - WRAP_ZONE)
    })
}

/// Exit 0: stdout must be exactly one JSON value (surrounding whitespace,
/// e.g. a trailing newline, is tolerated and dropped).
fn output(stdout: Vec<u8>, max_output_bytes: usize) -> Result<String, RunFailure> {
    // The pipe stops at the cap, so a full pipe means output was cut off even
    // if the guest ignored the write error and exited 0.
    if stdout.len() >= max_output_bytes {
        return Err(output_too_large(max_output_bytes));
    }
    let text =
        String::from_utf8(stdout).map_err(|e| invalid_output(format!("it is not UTF-8 ({e})")))?;
    // `RawValue` validates without serde_json's depth limit, and PostgreSQL
    // cannot store what is much deeper than this (SQLSTATE 54001, which
    // failed the whole result batch): the input's limit holds for output.
    if nesting_depth(text.as_bytes()) > MAX_JSON_DEPTH {
        return Err(failure(
            ErrorKind::InvalidOutput,
            format!(
                "function output is nested too deeply: at most {MAX_JSON_DEPTH} levels of arrays and objects"
            ),
        ));
    }
    let json = serde_json::from_str::<&RawValue>(&text)
        .map_err(|e| invalid_output(e.to_string()))?
        .get();
    // Validated without re-serialising: the function's own text is kept.
    if json.len() == text.len() {
        Ok(text)
    } else {
        Ok(json.to_owned())
    }
}

fn invalid_output(reason: String) -> RunFailure {
    failure(
        ErrorKind::InvalidOutput,
        format!(
            "function output is not valid JSON: {reason} (hint: print logs with eprintln!, not println!)"
        ),
    )
}

fn output_too_large(max_output_bytes: usize) -> RunFailure {
    failure(
        ErrorKind::InvalidOutput,
        format!("output exceeds {max_output_bytes} bytes"),
    )
}

fn out_of_memory(memory_bytes: usize) -> RunFailure {
    failure(
        ErrorKind::OutOfMemory,
        format!("memory limit of {} exceeded", human_bytes(memory_bytes)),
    )
}

fn failure(kind: ErrorKind, message: String) -> RunFailure {
    RunFailure { kind, message }
}

/// "128 MiB" when the limit is a whole number of MiB (it always is when it
/// comes from `memory_limit_mb`), else exact bytes.
fn human_bytes(bytes: usize) -> String {
    const MIB: usize = 1 << 20;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// Renders captured stderr: lossy UTF-8, never splitting a character at the
/// cut, with a visible marker when bytes were dropped.
pub(crate) fn render_logs(captured: CapturedLogs, max_log_bytes: usize) -> (String, bool) {
    let CapturedLogs {
        mut bytes,
        truncated,
    } = captured;
    if truncated {
        // The cap may have cut a multi-byte character in two; drop the
        // incomplete tail instead of rendering it as U+FFFD.
        if let Err(e) = std::str::from_utf8(&bytes) {
            if e.error_len().is_none() {
                bytes.truncate(e.valid_up_to());
            }
        }
    }
    let mut logs = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    if truncated {
        if !logs.is_empty() && !logs.ends_with('\n') {
            logs.push('\n');
        }
        logs.push_str(&format!("[logs truncated at {max_log_bytes} bytes]"));
    }
    (logs, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(result: wasmtime::Result<()>, stdout: &str) -> Ended {
        Ended {
            result,
            stdout: stdout.as_bytes().to_vec(),
            refusals: Refusals::default(),
            timeout: Duration::from_millis(10_000),
            memory_bytes: 128 << 20,
            max_output_bytes: 1 << 20,
        }
    }

    fn exit(code: i32) -> wasmtime::Result<()> {
        Err(wasmtime::Error::new(I32Exit(code)))
    }

    #[test]
    fn exit_zero_keeps_the_json_text_without_surrounding_whitespace() {
        assert_eq!(
            classify(ended(Ok(()), "{\"a\": 1}\n")),
            Ok("{\"a\": 1}".to_owned())
        );
        assert_eq!(classify(ended(exit(0), "[1,2]")), Ok("[1,2]".to_owned()));
    }

    #[test]
    fn exit_zero_with_text_that_is_not_json_is_invalid_output() {
        let failure = classify(ended(Ok(()), "hello\n{}")).unwrap_err();

        assert_eq!(failure.kind, ErrorKind::InvalidOutput);
        assert!(
            failure
                .message
                .starts_with("function output is not valid JSON: "),
            "{failure:?}"
        );
    }

    #[test]
    fn exit_codes_map_to_the_contract() {
        let cases = [
            (1, "  boom \n", ErrorKind::HandlerError, "boom"),
            (1, "", ErrorKind::HandlerError, "handler returned an error"),
            (
                65,
                "invalid input: expected u32",
                ErrorKind::InvalidInput,
                "invalid input: expected u32",
            ),
            (
                101,
                "panicked at src/handler.rs:3:5: oops",
                ErrorKind::Panic,
                "panicked at src/handler.rs:3:5: oops",
            ),
            (
                74,
                "",
                ErrorKind::InvalidOutput,
                "output exceeds 1048576 bytes",
            ),
            (3, "", ErrorKind::Exit, "function exited with code 3"),
        ];
        for (code, stdout, kind, message) in cases {
            let failure = classify(ended(exit(code), stdout)).unwrap_err();
            assert_eq!(
                failure,
                RunFailure {
                    kind,
                    message: message.to_owned()
                },
                "exit {code}"
            );
        }
    }

    #[test]
    fn an_unreachable_trap_after_refused_growth_is_out_of_memory() {
        let mut ended = ended(Err(wasmtime::Error::new(Trap::UnreachableCodeReached)), "");
        ended.refusals.memory = true;

        let failure = classify(ended).unwrap_err();

        assert_eq!(failure.kind, ErrorKind::OutOfMemory);
        assert_eq!(failure.message, "memory limit of 128 MiB exceeded");
    }

    #[test]
    fn traps_are_described_without_the_wasm_trap_prefix() {
        let failure = classify(ended(
            Err(wasmtime::Error::new(Trap::IntegerDivisionByZero)),
            "",
        ))
        .unwrap_err();

        assert_eq!(
            failure,
            RunFailure {
                kind: ErrorKind::Trap,
                message: "integer divide by zero".into()
            }
        );
    }

    #[test]
    fn output_filling_the_pipe_is_too_large_even_after_exit_zero() {
        let mut ended = ended(Ok(()), "\"abcd\"");
        ended.max_output_bytes = 6;

        let failure = classify(ended).unwrap_err();

        assert_eq!(
            failure,
            RunFailure {
                kind: ErrorKind::InvalidOutput,
                message: "output exceeds 6 bytes".into()
            }
        );
    }

    #[test]
    fn output_nested_deeper_than_an_input_may_be_is_invalid_output() {
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        let at_limit = format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH),
            "]".repeat(MAX_JSON_DEPTH)
        );

        let failure = classify(ended(Ok(()), &deep)).unwrap_err();

        assert_eq!(
            failure,
            RunFailure {
                kind: ErrorKind::InvalidOutput,
                message:
                    "function output is nested too deeply: at most 128 levels of arrays and objects"
                        .into()
            }
        );
        assert_eq!(classify(ended(Ok(()), &at_limit)), Ok(at_limit));
    }

    #[test]
    fn truncated_logs_never_end_in_half_a_character_and_carry_a_marker() {
        // "é" is two bytes; the cap cut it after the first.
        let captured = CapturedLogs {
            bytes: b"ab\xc3".to_vec(),
            truncated: true,
        };

        let (logs, truncated) = render_logs(captured, 3);

        assert_eq!(logs, "ab\n[logs truncated at 3 bytes]");
        assert!(truncated);
    }

    #[test]
    fn invalid_utf8_in_logs_is_replaced_not_dropped() {
        let captured = CapturedLogs {
            bytes: b"a\xffb\n".to_vec(),
            truncated: false,
        };

        assert_eq!(
            render_logs(captured, 100),
            ("a\u{fffd}b\n".to_owned(), false)
        );
    }
}
