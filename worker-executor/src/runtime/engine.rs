//! The process-wide wasmtime `Engine` and the thread that advances its epoch.
//!
//! Timeouts use epoch interruption rather than fuel: the generated code only
//! checks a counter at function entries and loop back-edges, which costs far
//! less than fuel metering, and one ticker thread serves every concurrent run.
//! (<https://docs.wasmtime.dev/examples-interrupting-wasm.html>)

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::limits::MAX_TABLE_ELEMENTS;

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
    WasmBacktraceDetails,
};

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

/// Instance slots in the pooling allocator: at most this many instances
/// exist at once (a Rust run uses one, a TypeScript run two, so the worker
/// runs at most [`MAX_CONCURRENT_RUNS`]). Each memory slot reserves address
/// space only (4 GiB plus guard): 2 TiB of the 128 TiB a process has.
const POOL_SLOTS: u32 = 512;
pub const MAX_CONCURRENT_RUNS: usize = POOL_SLOTS as usize / 2;
/// Bytes of each memory slot kept mapped between runs and reset in place
/// (only the pages a run dirtied, found with `PAGEMAP_SCAN` on Linux 6.7+)
/// instead of being unmapped and faulted back in: covers the JavaScript
/// engine's whole snapshot (about 5 MiB) and a Rust module's stack and data.
const KEEP_RESIDENT_BYTES: usize = 8 << 20;
/// The same for each table slot. wasmtime's default of 0 hands every table
/// back to the kernel after each run: one `madvise` per run, and with it a
/// TLB shootdown that interrupts every other core running one of our
/// threads. A whole slot (MAX_TABLE_ELEMENTS pointers) is kept instead, and
/// zeroed in place: only the table's current size, and of that only the
/// pages the run dirtied where `PAGEMAP_SCAN` finds them. What stays
/// resident is at most the largest table a slot has held.
const TABLE_KEEP_RESIDENT_BYTES: usize = MAX_TABLE_ELEMENTS * std::mem::size_of::<usize>();

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
        .wasm_stack_switching(false)
        // The pooling allocator reuses memory slots instead of mapping and
        // unmapping memory per run, and resets only what a run dirtied: a
        // TypeScript run otherwise spends most of its time in page faults
        // on the engine snapshot (docs/benchmarks.md).
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling()));
    Engine::new(&config).map_err(anyhow::Error::from)
}

fn pooling() -> PoolingAllocationConfig {
    let mut pooling = PoolingAllocationConfig::new();
    pooling
        .total_core_instances(POOL_SLOTS)
        .total_memories(POOL_SLOTS)
        .total_tables(POOL_SLOTS)
        // Components and fibers are not used.
        .total_component_instances(0)
        .total_stacks(0)
        // Every function's own limit is enforced by the store limiter; the
        // slot must hold the largest any configuration allows.
        .max_memory_size(1 << 32)
        .table_elements(MAX_TABLE_ELEMENTS)
        .max_memories_per_module(1)
        .max_tables_per_module(super::limits::MAX_TABLES as u32)
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(TABLE_KEEP_RESIDENT_BYTES)
        .pagemap_scan(Enabled::Auto);
    pooling
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
