//! `plat_invoke`: one execution of a handler, with a Node-like event loop.

use std::{
    io::{Read, Write},
    time::Duration,
};

use javy::quickjs::{qjs, Ctx, Error as JsError, Function, Module, Object, Value};

use crate::{
    engine::{self, with_engine},
    position_map::PositionMap,
    wasi::{self, exit_code},
};

const NEVER_SETTLED: &str =
    "the handler's promise never settled (no timers or pending jobs were left)";

/// Runs the handler in `bytecode` once. Returns only on success (exit 0);
/// every failure exits with the code the host expects.
pub fn run(bytecode: &'static [u8], map: PositionMap) {
    // The snapshot froze fastrand's state; reseed so Math.random differs per run.
    fastrand::seed(wasi::random_u64());
    engine::begin_invocation(map);

    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        wasi::fail(
            exit_code::BAD_INPUT,
            &format!("invalid input: reading stdin failed: {e}"),
            None,
        );
    }
    let Ok(input) = String::from_utf8(input) else {
        wasi::fail(
            exit_code::BAD_INPUT,
            "invalid input JSON: the input is not valid UTF-8",
            None,
        );
    };

    let json = with_engine(|engine| {
        engine.runtime.context().with(|ctx| {
            let invocation = Invocation {
                internals: engine.internals(&ctx),
                ctx: ctx.clone(),
            };
            invocation.execute(bytecode, &input)
        })
    });

    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(json.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(exit_code::OUTPUT_FAILED);
    }
}

struct Invocation<'js> {
    ctx: Ctx<'js>,
    internals: Object<'js>,
}

impl<'js> Invocation<'js> {
    /// Everything up to the result's JSON; failures exit.
    fn execute(&self, bytecode: &[u8], input: &str) -> String {
        let input = match self.ctx.json_parse(input) {
            Ok(value) => value,
            Err(e) => {
                let message = self.exception_message(e);
                wasi::fail(
                    exit_code::BAD_INPUT,
                    &format!("invalid input JSON: {message}"),
                    None,
                )
            }
        };

        // SAFETY: the bytes come from plat_compile of this same engine build;
        // the host records the engine version each function was built with.
        let module = unsafe { Module::load(self.ctx.clone(), bytecode) }
            .unwrap_or_else(|e| self.uncaught(e));
        let (module, evaluated) = module.eval().unwrap_or_else(|e| self.uncaught(e));
        // Top-level await: the module is ready once its promise settles.
        let evaluation = self.track(evaluated.into_value());
        self.run_until_settled(&evaluation);
        self.fail_if_rejected(&evaluation);

        let handler: Value = module.get("default").unwrap_or_else(|e| self.uncaught(e));
        let Some(handler) = handler.as_function().cloned() else {
            let found = self.type_name(&handler);
            wasi::fail(
                exit_code::HANDLER_ERROR,
                &format!("the module's default export is not a function (found {found})"),
                None,
            );
        };

        let returned: Value = handler.call((input,)).unwrap_or_else(|e| self.uncaught(e));
        let outcome = self.track(returned);
        self.run_until_settled(&outcome);
        self.fail_if_rejected(&outcome);
        // Like Node, the run lasts until no timers remain.
        self.run_until_idle();

        let result: Value = outcome.get("value").unwrap_or_else(|e| self.uncaught(e));
        self.call_internal("stringifyResult", (result,))
    }

    /// `internals.track(value)`: an object whose `done`/`failed`/`value`
    /// follow the value's settlement (thenables included).
    fn track(&self, value: Value<'js>) -> Object<'js> {
        self.call_internal("track", (value,))
    }

    fn is_done(&self, state: &Object<'js>) -> bool {
        state.get("done").unwrap_or_else(|e| self.uncaught(e))
    }

    fn fail_if_rejected(&self, state: &Object<'js>) {
        let failed: bool = state.get("failed").unwrap_or_else(|e| self.uncaught(e));
        if failed {
            let reason: Value = state.get("value").unwrap_or_else(|e| self.uncaught(e));
            self.report_uncaught(reason);
        }
    }

    /// Runs microtasks and timers until `state` settles.
    fn run_until_settled(&self, state: &Object<'js>) {
        loop {
            self.run_microtasks();
            if self.is_done(state) {
                return;
            }
            if !self.run_next_timer() {
                wasi::fail(exit_code::HANDLER_ERROR, NEVER_SETTLED, None);
            }
        }
    }

    /// Runs microtasks and timers until none are left.
    fn run_until_idle(&self) {
        loop {
            self.run_microtasks();
            if !self.run_next_timer() {
                return;
            }
        }
    }

    /// Waits for and runs the earliest timer; false if there are none.
    fn run_next_timer(&self) -> bool {
        let delay: f64 = self.call_internal("nextTimerDelay", ());
        if delay < 0.0 {
            return false;
        }
        if delay > 0.0 {
            // WASI poll_oneoff: the host's deadline can interrupt it.
            std::thread::sleep(Duration::from_secs_f64(delay / 1000.0));
        }
        let () = self.call_internal("runNextTimer", ());
        true
    }

    /// Drains the job queue; a job's exception (e.g. from `queueMicrotask`)
    /// is uncaught.
    fn run_microtasks(&self) {
        let rt = self.ctx.as_raw().as_ptr();
        loop {
            let mut job_ctx = std::mem::MaybeUninit::<*mut qjs::JSContext>::uninit();
            // SAFETY: the runtime pointer comes from this live context; we hold
            // its lock inside `Context::with`.
            let status =
                unsafe { qjs::JS_ExecutePendingJob(qjs::JS_GetRuntime(rt), job_ctx.as_mut_ptr()) };
            match status {
                0 => return,
                1 => continue,
                _ => {
                    let exception = self.ctx.catch();
                    self.report_uncaught(exception);
                }
            }
        }
    }

    fn call_internal<A, R>(&self, name: &str, args: A) -> R
    where
        A: javy::quickjs::function::IntoArgs<'js>,
        R: javy::quickjs::FromJs<'js>,
    {
        let function: Function = self
            .internals
            .get(name)
            .unwrap_or_else(|e| self.uncaught(e));
        function.call(args).unwrap_or_else(|e| self.uncaught(e))
    }

    /// An rquickjs error: an exception becomes an uncaught error, anything
    /// else (e.g. a type mismatch) is reported as an internal error.
    fn uncaught<T>(&self, error: JsError) -> T {
        if error.is_exception() {
            let exception = self.ctx.catch();
            self.report_uncaught(exception)
        }
        wasi::fail(
            exit_code::HANDLER_ERROR,
            &format!("internal error: {error}"),
            Some(&format!("Uncaught InternalError: {error}")),
        )
    }

    /// Prints an uncaught error Node-style and exits 1.
    fn report_uncaught(&self, value: Value<'js>) -> ! {
        let described: javy::quickjs::Result<Vec<String>> = self
            .internals
            .get::<_, Function>("describeUncaught")
            .and_then(|f| f.call((value.clone(),)));
        match described {
            Ok(parts) if parts.len() == 2 => {
                wasi::fail(exit_code::HANDLER_ERROR, &parts[0], Some(&parts[1]))
            }
            _ => {
                // Describing failed too, most likely out of memory: fall back
                // to what QuickJS can tell without allocating much.
                let _ = self.ctx.catch();
                let message = value
                    .as_object()
                    .and_then(|o| o.get::<_, String>("message").ok())
                    .unwrap_or_else(|| String::from("uncaught exception"));
                wasi::fail(
                    exit_code::HANDLER_ERROR,
                    &message,
                    Some(&format!("Uncaught {message}")),
                )
            }
        }
    }

    /// The message of a caught exception (for the invalid-input report).
    fn exception_message(&self, error: JsError) -> String {
        if !error.is_exception() {
            return error.to_string();
        }
        let exception = self.ctx.catch();
        exception
            .as_object()
            .and_then(|o| o.get::<_, String>("message").ok())
            .unwrap_or_else(|| String::from("unknown error"))
    }

    fn type_name(&self, value: &Value<'js>) -> &'static str {
        if value.is_undefined() {
            "undefined"
        } else if value.is_null() {
            "null"
        } else if value.is_object() {
            "an object"
        } else if value.is_string() {
            "a string"
        } else if value.is_number() {
            "a number"
        } else if value.is_bool() {
            "a boolean"
        } else {
            "a non-function value"
        }
    }
}
