//! The process-wide wasmtime `Engine` and the thread that advances its epoch.
//!
//! Timeouts use epoch interruption rather than fuel: the generated code only
//! checks a counter at function entries and loop back-edges, which costs far
//! less than fuel metering, and one ticker thread serves every concurrent run.
//! (<https://docs.wasmtime.dev/examples-interrupting-wasm.html>)

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, OptLevel, WasmBacktraceDetails};

/// How often the epoch advances; a run's deadline is measured in these ticks,
/// so it is also the granularity of the timeout.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The guest's native (wasm) call stack: room for about 9 000 nested calls
/// of a TypeScript handler (QuickJS uses some 850 bytes of it per JS call)
/// and for deep recursion in Rust. Runs happen on threads with
/// [`RUN_THREAD_STACK`], never on a thread of unknown stack size.
pub(crate) const MAX_WASM_STACK: usize = 8 << 20;

/// A run thread's stack: the guest's stack plus room for the host frames
/// beneath it (wasmtime's entry, WASI calls made at the deepest point).
/// Reserved address space; only the pages a run touches are committed.
pub(crate) const RUN_THREAD_STACK: usize = MAX_WASM_STACK + (4 << 20);

/// Builds the one `Engine` a process shares: compiled modules are tied to the
/// engine that compiled them, so every `LoadedModule` must come from here.
pub(crate) fn build_engine() -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        // Runs are synchronous and never use fibers, but wasmtime checks the
        // fiber size against the wasm stack all the same.
        .async_stack_size(RUN_THREAD_STACK)
        .cranelift_opt_level(OptLevel::Speed)
        // Parsing DWARF for backtraces is slow and is only wanted when the
        // host's WASMTIME_BACKTRACE_DETAILS says so; never let the environment
        // change how a run behaves.
        .wasm_backtrace_details(WasmBacktraceDetails::Disable)
        // Our `ResourceLimiter` is the memory boundary. GC and exception
        // objects live in a separate GC heap and shared memories grow outside
        // the ordinary path, so proposals that create them stay off: neither
        // Rust (wasm32-wasip1, panic=abort) nor the TypeScript engine needs them.
        .wasm_gc(false)
        .wasm_exceptions(false)
        .wasm_threads(false)
        .wasm_stack_switching(false);
    Engine::new(&config).map_err(anyhow::Error::from)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub(crate) struct EpochTicker {
    /// Dropping the sender wakes the thread at once (`Disconnected`), so a
    /// dropped `Runtime` does not wait out a tick.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine) -> anyhow::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("plat-epoch-ticker".into())
            .spawn(move || {
                // Ends on `Disconnected` (the sender was dropped).
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // The loop cannot panic; a join error would only mean it did, and
            // there is nothing left to clean up either way.
            let _ = thread.join();
        }
    }
}
