//! The QuickJS runtime and context that live in the wizer snapshot, the
//! native functions the JS prelude uses, and compilation to bytecode.

use std::{
    cell::{Cell, RefCell},
    io::Write,
    time::Instant,
};

use javy::{
    quickjs::{
        context::EvalOptions, promise::PromiseState, qjs, Array, ArrayBuffer, Ctx, Function,
        Module, Object, Persistent, Promise, Value, WriteOptions,
    },
    Config, Runtime,
};

use crate::position_map::PositionMap;

/// The prelude: one function over the concatenated files, called once with
/// the native helpers; it installs the globals and returns the `internals`
/// object the Rust side calls into. Function declarations are hoisted across
/// files, so order only matters for top-level statements.
const PRELUDE: &str = concat!(
    "(function (native) {\n'use strict';\nconst internals = {};\n",
    include_str!("prelude/errors.js"),
    include_str!("prelude/inspect.js"),
    include_str!("prelude/console.js"),
    include_str!("prelude/timers.js"),
    include_str!("prelude/globals.js"),
    "return internals;\n})\n",
);

/// Everything that survives from `plat_init` to the calls after the snapshot.
pub struct Engine {
    pub runtime: Runtime,
    /// The object the prelude returned.
    pub internals: Persistent<Object<'static>>,
}

// The module is single-threaded, so a thread-local is simply "the instance's
// engine". It is filled during wizer's init and read back from the snapshot.
thread_local! {
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
    /// Positions map for the current invocation.
    static POSITION_MAP: RefCell<PositionMap> = RefCell::new(PositionMap::default());
    /// When the current invocation began: the origin of `performance.now()`
    /// and timer deadlines (set per run, never from the snapshot).
    static CLOCK_ORIGIN: Cell<Option<Instant>> = const { Cell::new(None) };
}

pub fn init() {
    ENGINE.with_borrow_mut(|engine| {
        if engine.is_none() {
            *engine = Some(
                Engine::new()
                    .unwrap_or_else(|e| panic!("initialising the JS engine failed: {e:#}")),
            );
        }
    });
}

/// Runs `f` with the engine, initialising it first if the host skipped wizer.
pub fn with_engine<R>(f: impl FnOnce(&Engine) -> R) -> R {
    init();
    ENGINE.with_borrow(|engine| f(engine.as_ref().expect("engine initialised")))
}

/// Starts the per-invocation state: the clock origin and the position map.
pub fn begin_invocation(map: PositionMap) {
    CLOCK_ORIGIN.set(Some(Instant::now()));
    POSITION_MAP.set(map);
}

fn now_ms() -> f64 {
    CLOCK_ORIGIN
        .get()
        .map_or(0.0, |origin| origin.elapsed().as_secs_f64() * 1000.0)
}

impl Engine {
    fn new() -> anyhow::Result<Self> {
        let mut config = Config::default();
        config
            .text_encoding(true)
            .weak_ref(true)
            // javy's console writes to fd 1/2 directly; the prelude replaces
            // it, but keep stdout clean even before that.
            // No `max_stack_size`: QuickJS ignores it on WASI (it has no
            // stack limit there). Deep recursion ends in a wasm trap when the
            // host's native stack limit or the shadow stack (build.rs) runs out.
            .redirect_stdout_to_stderr(true);
        let runtime = Runtime::new(config)?;
        let internals = runtime.context().with(|ctx| -> anyhow::Result<_> {
            let native = native_helpers(&ctx)?;
            let options = {
                let mut o = EvalOptions::default();
                o.global = true;
                o.strict = true;
                o.filename = Some("plat:prelude".into());
                o
            };
            let prelude: Function = ctx
                .eval_with_options(PRELUDE, options)
                .map_err(|e| describe_init_error(&ctx, e))?;
            let internals: Object = prelude
                .call((native,))
                .map_err(|e| describe_init_error(&ctx, e))?;
            Ok(Persistent::save(&ctx, internals))
        })?;
        runtime.context().with(|ctx| enable_cycle_collector(&ctx));
        Ok(Self { runtime, internals })
    }

    /// The prelude's `internals` object in this context.
    pub fn internals<'js>(&self, ctx: &Ctx<'js>) -> Object<'js> {
        self.internals
            .clone()
            .restore(ctx)
            .expect("internals belong to this runtime")
    }
}

/// Live allocations a run may add before QuickJS's cycle collector first
/// runs; a small handler's run stays below it and never pays for a
/// collection.
const GC_HEADROOM_ALLOCATIONS: usize = 16_000;
/// What QuickJS adds to its heap size per allocation on WASI (its
/// `MALLOC_OVERHEAD`): it cannot ask wasi-libc for an allocation's size, so
/// its "bytes" are 8 per live allocation.
const QUICKJS_BYTES_PER_ALLOCATION: usize = 8;

/// javy turns the cycle collector off (threshold `usize::MAX`). QuickJS frees
/// most garbage by reference counting, but cyclic garbage (an object that
/// points at itself, closures over their own scope) would pile up until the
/// memory limit. This arms it [`GC_HEADROOM_ALLOCATIONS`] past what the
/// prelude left; after each collection QuickJS sets the next threshold at
/// 1.5 times what survived.
fn enable_cycle_collector(ctx: &Ctx<'_>) {
    // SAFETY: the runtime pointer comes from this live context, whose lock
    // `Context::with` holds; both calls only read or set runtime fields.
    unsafe {
        let rt = qjs::JS_GetRuntime(ctx.as_raw().as_ptr());
        let mut usage = std::mem::zeroed::<qjs::JSMemoryUsage>();
        qjs::JS_ComputeMemoryUsage(rt, &mut usage);
        let baseline = usize::try_from(usage.malloc_size).unwrap_or(0);
        qjs::JS_SetGCThreshold(
            rt,
            qjs::size_t::try_from(
                baseline + GC_HEADROOM_ALLOCATIONS * QUICKJS_BYTES_PER_ALLOCATION,
            )
            .unwrap_or(qjs::size_t::MAX),
        );
    }
}

fn describe_init_error(ctx: &Ctx<'_>, error: javy::quickjs::Error) -> anyhow::Error {
    if error.is_exception() {
        let exception = ctx.catch();
        let stack: Option<String> = exception.as_object().and_then(|o| o.get("stack").ok());
        anyhow::anyhow!("{exception:?} {}", stack.unwrap_or_default())
    } else {
        error.into()
    }
}

/// The `native` object handed to the prelude.
fn native_helpers<'js>(ctx: &Ctx<'js>) -> javy::quickjs::Result<Object<'js>> {
    let native = Object::new(ctx.clone())?;
    native.set(
        "writeStderr",
        Function::new(ctx.clone(), |text: javy::quickjs::String<'js>| {
            let text = text
                .to_string()
                .unwrap_or_else(|_| String::from("<unprintable string>"));
            // A failing stderr (e.g. over the host's cap) must not fail the run.
            let _ = std::io::stderr().write_all(text.as_bytes());
        })?,
    )?;
    native.set(
        "mapPosition",
        Function::new(ctx.clone(), |line: u32, col: u32| {
            POSITION_MAP
                .with_borrow(|map| map.lookup(line, col))
                .map(|(l, c)| vec![l, c])
        })?,
    )?;
    native.set("now", Function::new(ctx.clone(), now_ms)?)?;
    native.set(
        "promiseState",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, promise: Promise<'js>| {
            let (state, value) = match promise.state() {
                PromiseState::Pending => (0, Value::new_undefined(ctx.clone())),
                PromiseState::Resolved => (
                    1,
                    promise
                        .result::<Value>()
                        .and_then(Result::ok)
                        .unwrap_or_else(|| Value::new_undefined(ctx.clone())),
                ),
                PromiseState::Rejected => (2, rejection_reason(&ctx, &promise)),
            };
            let pair = Array::new(ctx.clone())?;
            pair.set(0, state)?;
            pair.set(1, value)?;
            javy::quickjs::Result::Ok(pair)
        })?,
    )?;
    native.set(
        "randomBytes",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, len: u32| {
            let mut bytes = vec![0u8; len as usize];
            crate::wasi::random_fill(&mut bytes);
            ArrayBuffer::new(ctx, bytes)
        })?,
    )?;
    Ok(native)
}

/// A rejected promise's reason. `Promise::result` reports it as a caught
/// exception, so take it back from the context.
fn rejection_reason<'js>(ctx: &Ctx<'js>, promise: &Promise<'js>) -> Value<'js> {
    match promise.result::<Value>() {
        Some(Err(e)) if e.is_exception() => ctx.catch(),
        _ => Value::new_undefined(ctx.clone()),
    }
}

/// `plat_compile`: source → bytecode on stdout (0), or the error on stderr (1).
pub fn compile(source: &[u8]) -> i32 {
    let Ok(source) = std::str::from_utf8(source) else {
        eprintln!("SyntaxError: the source is not valid UTF-8");
        return 1;
    };
    with_engine(|engine| {
        engine.runtime.context().with(|ctx| {
            let options = WriteOptions {
                // Keeps line/column tables for stack traces; drops the source
                // text, which only `Function.prototype.toString` would use.
                strip_source: true,
                strip_debug: false,
                ..WriteOptions::default()
            };
            match Module::declare(ctx.clone(), "handler.js", source).and_then(|m| m.write(options))
            {
                Ok(bytecode) => {
                    let mut stdout = std::io::stdout().lock();
                    match stdout.write_all(&bytecode).and_then(|()| stdout.flush()) {
                        Ok(()) => 0,
                        Err(e) => {
                            eprintln!("InternalError: writing the bytecode failed: {e}");
                            1
                        }
                    }
                }
                Err(e) if e.is_exception() => {
                    let exception = ctx.catch();
                    let report: javy::quickjs::Result<String> = engine
                        .internals(&ctx)
                        .get::<_, Function>("compileErrorReport")
                        .and_then(|f| f.call((exception,)));
                    match report {
                        Ok(report) => eprintln!("{report}"),
                        Err(_) => eprintln!("SyntaxError: the module could not be compiled"),
                    }
                    1
                }
                Err(e) => {
                    eprintln!("InternalError: {e}");
                    1
                }
            }
        })
    })
}
