//! Loading a module once and running it many times: the `InstancePre` is built
//! at load, each run gets a fresh `Store` (WASI context, limiter, deadline).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use plat_common::js_module;
use wasmtime::{
    Engine, Extern, ExternType, Instance, InstancePre, Linker, Module, ModuleExport, Store,
    UpdateDeadline,
};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::WasiCtxBuilder;

use super::exit;
use super::limits::Limiter;
use super::logs::LogPipe;
use super::outcome::{self, Ended};
use super::poll::{self, Cancelled, GuestClock, Timing};
use super::{CancelFlag, ErrorKind, LoadedEngine, LoadedModule, RunFailure, RunLimits, RunOutcome};

/// The guest's `argv`: no paths, nothing about the host.
const ARGV0: &str = "handler";

const ONE_YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// The data of one run's `Store`.
pub(crate) struct RunState {
    wasi: WasiP1Ctx,
    limiter: Limiter,
    timing: Timing,
}

/// What a `LoadedModule` holds: everything per-module that can be prepared
/// once, so a run only instantiates and calls.
pub(crate) enum Prepared {
    /// A standalone WASI command (Rust functions).
    Command {
        pre: InstancePre<RunState>,
        start: ModuleExport,
    },
    /// A module linking against the JavaScript engine (TypeScript
    /// functions): each run instantiates the engine, then the module with
    /// its imports taken from that engine instance.
    Linked {
        module: Module,
        engine: Arc<LoadedEngine>,
        /// The engine export that satisfies each import, in import order.
        imports: Vec<ModuleExport>,
        start: ModuleExport,
    },
}

impl Prepared {
    fn engine(&self) -> &Engine {
        match self {
            Prepared::Command { pre, .. } => pre.module().engine(),
            Prepared::Linked { module, .. } => module.engine(),
        }
    }
}

/// The engine module, instantiable with WASI (see [`prepare_engine`]).
pub(crate) struct PreparedEngine {
    pre: InstancePre<RunState>,
}

/// The linker every module is instantiated with: WASIp1, with our
/// deadline-aware `poll_oneoff` and contract-faithful `proc_exit`. Built once
/// per `Runtime`.
pub(crate) fn build_linker(engine: &Engine) -> anyhow::Result<Linker<RunState>> {
    let mut linker = Linker::new(engine);
    p1::add_to_linker_sync(&mut linker, |state: &mut RunState| &mut state.wasi)?;
    poll::add_to_linker(&mut linker, |state: &RunState| state.timing.clone())?;
    exit::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// Prepares a compiled WASI command (a Rust function).
pub(crate) fn prepare(linker: &Linker<RunState>, module: Module) -> anyhow::Result<Prepared> {
    let start = command_start(&module)?;
    // Resolves every import now, so a module needing something we do not
    // provide (sockets of another WASI version, threads, …) fails at load, not
    // at its first run.
    let pre = linker
        .instantiate_pre(&module)
        .map_err(anyhow::Error::from)
        .context("module imports something Plat does not provide")?;
    Ok(Prepared::Command { pre, start })
}

/// Prepares a JavaScript engine build: a WASI reactor exporting what function
/// modules import (`plat_common::js_module`).
pub(crate) fn prepare_engine(
    linker: &Linker<RunState>,
    module: Module,
) -> anyhow::Result<PreparedEngine> {
    for name in [js_module::MEMORY, js_module::REALLOC, js_module::INVOKE] {
        if module.get_export(name).is_none() {
            anyhow::bail!("the JavaScript engine does not export `{name}`");
        }
    }
    let pre = linker
        .instantiate_pre(&module)
        .map_err(anyhow::Error::from)
        .context("the JavaScript engine imports something Plat does not provide")?;
    Ok(PreparedEngine { pre })
}

/// Prepares a function module that links against `loaded_engine`: every
/// import must name one of the engine's exports.
pub(crate) fn prepare_linked(
    module: Module,
    loaded_engine: Arc<LoadedEngine>,
) -> anyhow::Result<Prepared> {
    let start = command_start(&module)?;
    let engine_module = loaded_engine.prepared.pre.module();
    let imports = module
        .imports()
        .map(|import| {
            if import.module() != js_module::ENGINE_IMPORT_MODULE {
                anyhow::bail!(
                    "module imports `{}::{}`, which Plat does not provide to JavaScript functions",
                    import.module(),
                    import.name()
                );
            }
            engine_module
                .get_export_index(import.name())
                .with_context(|| {
                    format!("the JavaScript engine does not export `{}`", import.name())
                })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Prepared::Linked {
        module,
        engine: loaded_engine,
        imports,
        start,
    })
}

/// A function module's `_start`, once it is known to be a WASI command.
fn command_start(module: &Module) -> anyhow::Result<ModuleExport> {
    check_command_exports(module)?;
    module
        .get_export_index("_start")
        .context("module does not export `_start`")
}

/// A WASI command: `_start: () -> ()` and a memory named `memory` (WASI
/// reads and writes guest buffers through it).
fn check_command_exports(module: &Module) -> anyhow::Result<()> {
    match module.get_export("_start") {
        Some(ExternType::Func(ty)) if ty.params().len() == 0 && ty.results().len() == 0 => {}
        Some(_) => anyhow::bail!("module export `_start` is not a function `() -> ()`"),
        None => anyhow::bail!("module does not export `_start` (not a WASI command)"),
    }
    match module.get_export("memory") {
        Some(ExternType::Memory(_)) => Ok(()),
        _ => anyhow::bail!("module does not export a memory named `memory`"),
    }
}

pub(crate) fn run(
    engine: &Engine,
    module: &LoadedModule,
    input: &[u8],
    limits: &RunLimits,
    cancel: &CancelFlag,
) -> RunOutcome {
    let started = Instant::now();
    // A module compiled by another engine would run without this runtime's
    // epoch ticker, i.e. without a timeout; refuse instead.
    if !Engine::same(module.prepared.engine(), engine) {
        return RunOutcome {
            result: Err(RunFailure {
                kind: ErrorKind::ModuleError,
                message: "module was loaded by a different runtime".to_owned(),
            }),
            logs: String::new(),
            logs_truncated: false,
            duration: started.elapsed(),
        };
    }
    let stdout = MemoryOutputPipe::new(limits.max_output_bytes);
    let logs = LogPipe::new(limits.max_log_bytes);
    // Capped so the addition cannot overflow `Instant`; a year is "no
    // deadline" in practice.
    let deadline = started
        .checked_add(limits.timeout.min(ONE_YEAR))
        .unwrap_or(started);
    let timing = Timing {
        deadline,
        clock: GuestClock::starting_at(started),
        cancel: cancel.clone(),
    };

    let wasi = WasiCtxBuilder::new()
        .stdin(MemoryInputPipe::new(Bytes::copy_from_slice(input)))
        .stdout(stdout.clone())
        .stderr(logs.clone())
        .arg(ARGV0)
        // Only these variables: the builder starts from an empty environment
        // and we never call `inherit_env`. Likewise no preopens (no files) and
        // no socket permissions (the default denies every address).
        .envs(&limits.env)
        .monotonic_clock(timing.clock)
        .build_p1();
    let mut store = Store::new(
        engine,
        RunState {
            wasi,
            limiter: Limiter::new(limits.memory_bytes),
            timing,
        },
    );
    store.limiter(|state| &mut state.limiter);
    // Checked at every epoch tick: the wall-clock deadline (never before it,
    // at most one tick after) and the cancel flag. One callback serves both,
    // since a store has one epoch deadline.
    let flag = cancel.clone();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if flag.is_cancelled() {
            Err(wasmtime::Error::new(Cancelled))
        } else if Instant::now() >= deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Continue(1))
        }
    });

    let result = instantiate_and_start(&mut store, &module.prepared);
    let duration = started.elapsed();
    let refusals = store.data().limiter.refusals();
    drop(store);

    let result = outcome::classify(Ended {
        result,
        stdout: Vec::from(stdout.contents()),
        refusals,
        timeout: limits.timeout,
        memory_bytes: limits.memory_bytes,
        max_output_bytes: limits.max_output_bytes,
    });
    let (logs, logs_truncated) = outcome::render_logs(logs.take(), limits.max_log_bytes);
    RunOutcome {
        result,
        logs,
        logs_truncated,
        duration,
    }
}

fn instantiate_and_start(store: &mut Store<RunState>, prepared: &Prepared) -> wasmtime::Result<()> {
    let (instance, start) = match prepared {
        Prepared::Command { pre, start } => (pre.instantiate(&mut *store)?, start),
        Prepared::Linked {
            module,
            engine,
            imports,
            start,
        } => {
            let engine_instance = engine.prepared.pre.instantiate(&mut *store)?;
            let imports = imports
                .iter()
                .map(|export| {
                    engine_instance
                        .get_module_export(&mut *store, export)
                        .ok_or_else(|| wasmtime::format_err!("the engine lost an export"))
                })
                .collect::<wasmtime::Result<Vec<Extern>>>()?;
            (Instance::new(&mut *store, module, &imports)?, start)
        }
    };
    let start = instance
        .get_module_export(&mut *store, start)
        .and_then(|export| export.into_func())
        .ok_or_else(|| wasmtime::format_err!("module lost its `_start` export"))?
        .typed::<(), ()>(&*store)?;
    start.call(&mut *store, ())
}
