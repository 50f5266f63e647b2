//! The sandbox that runs a function module: a WASI preview1 command whose
//! stdin is the input JSON and whose stdout is the output JSON.
//!
//! Shaped like spin's executor: one wasmtime [`Engine`](wasmtime::Engine) per
//! process ([`Runtime`]), an `InstancePre` per module ([`LoadedModule`]) and a
//! fresh `Store` per run, carrying the memory limiter and the epoch deadline.
//! TypeScript functions are small modules linked against a shared JavaScript
//! engine ([`LoadedEngine`]): a run instantiates both in one store, so the
//! limits cover the engine too.
//!
//! A runtime made with [`Runtime::with_disk_cache`] keeps the native code it
//! compiles in a folder and reads it back in later processes
//! ([`disk_cache`]), so Cranelift compiles a module once per machine.
//!
//! Both [`Runtime::load`] and [`Runtime::run`] block (compiling, running wasm):
//! never call them on an async worker thread. `run` must also not be called
//! on a thread that is inside a tokio runtime's `block_on`, because WASI host
//! calls enter the ambient tokio runtime.
//!
//! The guest's call stack lives on the host thread's stack, so `run` belongs
//! on a run thread ([`RunThreads`], [`spawn_run_thread`]). Called anywhere
//! else, it starts such a thread for itself (a few tens of µs more per run).
//!
//! Isolation per run: no preopened directories (no filesystem), no network,
//! only [`RunLimits::env`] as the environment, `argv = ["handler"]`; real
//! clocks and randomness.

mod disk_cache;
mod engine;
mod exit;
mod limits;
mod logs;
mod outcome;
mod poll;
mod run;
mod threads;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

pub use plat_common::ErrorKind;
use plat_common::ExecutionConfig;

use self::disk_cache::{DiskCache, Origin};
use self::engine::EpochTicker;
pub use self::engine::MAX_CONCURRENT_RUNS;
use self::run::{Prepared, RunState};
pub use self::threads::{spawn_run_thread, RunThreads};

/// One per process: the wasmtime engine, the WASI linker and the thread that
/// drives timeouts. Share it (`Arc<Runtime>`) between all runs; dropping it
/// stops the ticker.
pub struct Runtime {
    engine: wasmtime::Engine,
    linker: wasmtime::Linker<RunState>,
    /// Where compiled code outlives the process; `None`: compile every load.
    disk_cache: Option<DiskCache>,
    _ticker: EpochTicker,
}

/// A compiled module with its imports resolved, ready to run any number of
/// times, concurrently. Cheap to share through an `Arc`. Only valid with the
/// [`Runtime`] that loaded it.
pub struct LoadedModule {
    prepared: Prepared,
}

/// A JavaScript engine build, compiled and ready to be instantiated under
/// the function modules that link against it (TypeScript functions). One
/// per engine build per process; share it through an `Arc`.
pub struct LoadedEngine {
    prepared: run::PreparedEngine,
}

/// The limits and environment of one run.
#[derive(Debug, Clone)]
pub struct RunLimits {
    /// Wall-clock budget for instantiation and the run (10 ms granularity;
    /// the function gets at least this long, at most one tick more).
    pub timeout: Duration,
    /// Cap on the guest's linear memory.
    pub memory_bytes: usize,
    /// The only environment variables the guest sees.
    pub env: Vec<(String, String)>,
    /// Cap on stdout. Output reaching it is reported as `INVALID_OUTPUT`.
    pub max_output_bytes: usize,
    /// Cap on captured stderr; the guest's writes beyond it still succeed.
    pub max_log_bytes: usize,
}

/// Default stdout cap: 1 MiB.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1 << 20;
/// Default stderr cap: 64 KiB.
pub const DEFAULT_MAX_LOG_BYTES: usize = 64 << 10;

impl Default for RunLimits {
    /// The platform defaults (the same as [`ExecutionConfig::default`]).
    fn default() -> Self {
        Self::from(&ExecutionConfig::default())
    }
}

impl From<&ExecutionConfig> for RunLimits {
    fn from(config: &ExecutionConfig) -> Self {
        Self {
            timeout: Duration::from_millis(u64::from(config.timeout_ms)),
            memory_bytes: usize::try_from(u64::from(config.memory_limit_mb) << 20)
                .unwrap_or(usize::MAX),
            env: config
                .environment_variables
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
        }
    }
}

/// Stops one run from another thread: running wasm is interrupted at the
/// next epoch tick (10 ms), a sleeping guest wakes within a tick. The run
/// then ends with [`ErrorKind::Cancelled`].
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

pub use plat_common::RunFailure;

/// Everything a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    /// The output JSON text (validated, not re-serialised), or why there is none.
    pub result: Result<String, RunFailure>,
    /// The guest's stderr, lossy UTF-8, cut at `max_log_bytes` on a character
    /// boundary, followed by a `[logs truncated at N bytes]` line when cut.
    pub logs: String,
    pub logs_truncated: bool,
    /// Instantiation plus the run.
    pub duration: Duration,
}

impl Runtime {
    /// Builds the engine (epoch interruption, 8 MiB wasm stack, Cranelift
    /// `Speed`) and starts the 10 ms epoch ticker. Every load compiles.
    pub fn new() -> anyhow::Result<Self> {
        Self::with_disk_cache(None)
    }

    /// [`new`](Self::new), keeping compiled native code in `dir` (created
    /// with mode 0700) and reading it back on later loads, in this process or
    /// the next. A folder that cannot be trusted (not ours, or writable by
    /// others) or created is logged and not used: loads then compile, as
    /// with `new`.
    pub fn with_disk_cache(dir: Option<&Path>) -> anyhow::Result<Self> {
        let engine = engine::build_engine()?;
        let linker = run::build_linker(&engine)?;
        let disk_cache = dir.and_then(|dir| match DiskCache::open(dir, &engine) {
            Ok(cache) => {
                tracing::info!(dir = %dir.display(), "compiled modules are cached on disk");
                Some(cache)
            }
            Err(error) => {
                tracing::warn!(
                    dir = %dir.display(),
                    error = %format_args!("{error:#}"),
                    "not using the module cache folder; every process will compile its modules"
                );
                None
            }
        });
        let ticker = EpochTicker::start(engine.clone())?;
        Ok(Self {
            engine,
            linker,
            disk_cache,
            _ticker: ticker,
        })
    }

    /// Compiles `wasm` (binary format) and resolves its imports. CPU-heavy
    /// (tens to hundreds of ms, unless the disk cache has it): call from
    /// `spawn_blocking`, and cache the result per module.
    pub fn load(&self, wasm: &[u8]) -> anyhow::Result<LoadedModule> {
        let module = self.compile(wasm).context("invalid wasm module")?;
        Ok(LoadedModule {
            prepared: run::prepare(&self.linker, module)?,
        })
    }

    /// Compiles a JavaScript engine build (about 0.6 s for its 1.7 MB,
    /// unless the disk cache has it): call from `spawn_blocking`, once per
    /// engine build.
    pub fn load_engine(&self, wasm: &[u8]) -> anyhow::Result<LoadedEngine> {
        let module = self
            .compile(wasm)
            .context("invalid JavaScript engine module")?;
        Ok(LoadedEngine {
            prepared: run::prepare_engine(&self.linker, module)?,
        })
    }

    /// Compiles a function module that links against `engine` (cheap: the
    /// module is a few hundred bytes).
    pub fn load_linked(
        &self,
        wasm: &[u8],
        engine: Arc<LoadedEngine>,
    ) -> anyhow::Result<LoadedModule> {
        let module = self.compile(wasm).context("invalid wasm module")?;
        Ok(LoadedModule {
            prepared: run::prepare_linked(module, engine)?,
        })
    }

    /// The native code for `wasm`: from the disk cache when it has it, else
    /// compiled now (binary format only: modules come from our compiler, and
    /// accepting the text format would put a second parser on this path for
    /// nothing).
    fn compile(&self, wasm: &[u8]) -> anyhow::Result<wasmtime::Module> {
        let (module, origin) = self.compile_or_read(wasm)?;
        tracing::debug!(?origin, wasm_bytes = wasm.len(), "native code ready");
        Ok(module)
    }

    /// [`compile`](Self::compile), also saying where the code came from.
    fn compile_or_read(&self, wasm: &[u8]) -> anyhow::Result<(wasmtime::Module, Origin)> {
        let compiled = match &self.disk_cache {
            Some(cache) => cache.module(&self.engine, wasm),
            None => wasmtime::Module::from_binary(&self.engine, wasm)
                .map(|module| (module, Origin::Compiled)),
        };
        compiled.map_err(anyhow::Error::from)
    }

    /// Runs `module` once with `input` on stdin. Blocks until the module
    /// exits, traps, hits a limit or times out; never panics on guest
    /// behaviour.
    pub fn run(&self, module: &LoadedModule, input: &[u8], limits: &RunLimits) -> RunOutcome {
        self.run_cancellable(module, input, limits, &CancelFlag::new())
    }

    /// [`run`](Self::run), stopped early when `cancel` is raised.
    pub fn run_cancellable(
        &self,
        module: &LoadedModule,
        input: &[u8],
        limits: &RunLimits,
        cancel: &CancelFlag,
    ) -> RunOutcome {
        let run = || run::run(&self.engine, module, input, limits, cancel);
        if threads::on_run_thread() {
            run()
        } else {
            threads::run_on_a_new_thread(run)
        }
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LoadedEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedEngine").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModule").finish_non_exhaustive()
    }
}

// The worker shares these across `spawn_blocking` tasks; keep that a
// compile-time guarantee rather than a surprise in someone else's crate.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Runtime>();
    assert_send_sync::<LoadedModule>();
    assert_send_sync::<LoadedEngine>();
};
