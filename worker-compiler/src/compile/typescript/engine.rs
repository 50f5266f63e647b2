//! The JavaScript engine (js-engine/, QuickJS for wasm32-wasip1) as the
//! compiler uses it: pre-initialised once per process with wizer, then run
//! in wasmtime to turn each function's JavaScript into QuickJS bytecode.
//!
//! The same pre-initialised module is what executors link functions
//! against. It is identified by its sha256, which every function version
//! built with it records: a newer engine never runs an older bytecode.

use std::time::Duration;

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine, InstancePre, Linker, Module, ResourceLimiter, Store, Trap};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};
use wasmtime_wizer::Wizer;

/// The engine as built by `build.rs`, before pre-initialisation.
const RAW_ENGINE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/js-engine.wasm"));
/// The engine's wizer entry point: creates the runtime and installs globals.
const INIT_FUNC: &str = "plat_init";
const COMPILE_FUNC: &str = "plat_compile";

/// QuickJS parses untrusted JavaScript here: its memory and instruction
/// budget bound what any source can cost. A 1 MiB handler compiles in a
/// small fraction of both.
const COMPILE_MEMORY_BYTES: usize = 512 << 20;
const COMPILE_FUEL: u64 = 20_000_000_000;
/// Bytecode is a few times the size of the source; anything near this is
/// not a function.
const MAX_BYTECODE_BYTES: usize = 64 << 20;
const MAX_MESSAGE_BYTES: usize = 64 << 10;
/// The engine's function table is fixed at build time; it never needs to grow.
const MAX_TABLE_ELEMENTS: usize = 100_000;
/// QuickJS's parser recurses about a dozen frames per nesting level of the
/// source; the nesting limit (`MAX_NESTING`) keeps every accepted source
/// inside this native stack. Compiles run on a thread with a far bigger
/// stack (`TRANSFORM_STACK_BYTES`); wizer's async call runs on a fiber that
/// must be bigger still.
const MAX_WASM_STACK: usize = 32 << 20;

/// Why QuickJS did not produce bytecode.
#[derive(Debug)]
pub(crate) enum EngineCompileError {
    /// The JavaScript is invalid: QuickJS's message, positions in the
    /// generated `handler.js`.
    Rejected(String),
    /// It hit a limit or crashed the engine; the message is for the user.
    Limit(String),
}

/// The pre-initialised engine, ready to compile.
pub(crate) struct JsEngine {
    /// The pre-initialised module: stored in `js_engines`, linked by executors.
    pub(crate) wasm: Vec<u8>,
    /// Hex sha256 of [`wasm`](Self::wasm): the engine's version.
    pub(crate) sha256: String,
    engine: Engine,
    pre: InstancePre<CompileState>,
}

struct CompileState {
    wasi: WasiP1Ctx,
    limiter: MemoryCap,
}

/// Caps linear memory and remembers whether it refused a growth, so a
/// failure after a refusal is reported as the memory limit.
struct MemoryCap {
    max_bytes: usize,
    refused: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max_bytes;
        self.refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl JsEngine {
    /// Pre-initialises the embedded engine and compiles it for this process
    /// (about 1.5 s: wizer, then Cranelift on 1.7 MB).
    pub(crate) async fn prepare() -> anyhow::Result<Self> {
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .max_wasm_stack(MAX_WASM_STACK)
            .async_stack_size(MAX_WASM_STACK + (1 << 20))
            .wasm_threads(false)
            .wasm_gc(false)
            .wasm_exceptions(false)
            .wasm_stack_switching(false);
        let engine = Engine::new(&config)?;
        let wasm = wizen(&engine)
            .await
            .context("pre-initialising the JavaScript engine")?;
        let sha256 = hex::encode(Sha256::digest(&wasm));
        let pre = tokio::task::spawn_blocking({
            let (engine, wasm) = (engine.clone(), wasm.clone());
            move || -> anyhow::Result<InstancePre<CompileState>> {
                let module = Module::from_binary(&engine, &wasm)?;
                let mut linker = Linker::new(&engine);
                p1::add_to_linker_sync(&mut linker, |state: &mut CompileState| &mut state.wasi)?;
                Ok(linker.instantiate_pre(&module)?)
            }
        })
        .await?
        .context("loading the JavaScript engine")?;
        Ok(Self {
            wasm,
            sha256,
            engine,
            pre,
        })
    }

    /// JavaScript → QuickJS bytecode. Blocks (it runs wasm): call it from a
    /// blocking thread outside any tokio runtime's `block_on`.
    pub(crate) fn compile(&self, javascript: &str) -> Result<Vec<u8>, EngineCompileError> {
        let stdout = MemoryOutputPipe::new(MAX_BYTECODE_BYTES);
        let stderr = MemoryOutputPipe::new(MAX_MESSAGE_BYTES);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build_p1();
        let limiter = MemoryCap {
            max_bytes: COMPILE_MEMORY_BYTES,
            refused: false,
        };
        let mut store = Store::new(&self.engine, CompileState { wasi, limiter });
        store.limiter(|state| &mut state.limiter);
        let status = store
            .set_fuel(COMPILE_FUEL)
            .and_then(|()| call_compile(&mut store, &self.pre, javascript.as_bytes()));
        match status {
            Ok(0) => Ok(Vec::from(stdout.contents())),
            Ok(_) => Err(EngineCompileError::Rejected(
                String::from_utf8_lossy(&stderr.contents()).trim().to_owned(),
            )),
            Err(error) => Err(EngineCompileError::Limit(match error.downcast_ref::<Trap>() {
                Some(Trap::OutOfFuel) => {
                    "the JavaScript is too large or too complex to compile (instruction budget exhausted)".to_owned()
                }
                _ if store.data().limiter.refused => format!(
                    "compiling the JavaScript needed more than {} MiB of memory",
                    COMPILE_MEMORY_BYTES >> 20
                ),
                Some(Trap::StackOverflow) => {
                    "the code is nested too deeply for the JavaScript engine to compile".to_owned()
                }
                // Only the trap's own words: the wasm backtrace is the
                // engine's internals, not something the user can act on.
                Some(trap) => format!("the JavaScript engine failed while compiling this code: {trap}"),
                None => format!(
                    "the JavaScript engine failed while compiling this code: {}",
                    error.root_cause()
                ),
            })),
        }
    }
}

fn call_compile(
    store: &mut Store<CompileState>,
    pre: &InstancePre<CompileState>,
    source: &[u8],
) -> wasmtime::Result<i32> {
    let instance = pre.instantiate(&mut *store)?;
    let memory = instance
        .get_memory(&mut *store, "memory")
        .ok_or_else(|| wasmtime::format_err!("the engine exports no memory"))?;
    let realloc =
        instance.get_typed_func::<(i32, i32, i32, i32), i32>(&mut *store, "cabi_realloc")?;
    let compile = instance.get_typed_func::<(i32, i32), i32>(&mut *store, COMPILE_FUNC)?;
    let len = i32::try_from(source.len()).map_err(|_| wasmtime::format_err!("source too large"))?;
    let ptr = realloc.call(&mut *store, (0, 0, 1, len))?;
    memory.write(&mut *store, ptr as u32 as usize, source)?;
    compile.call(&mut *store, (ptr, len))
}

/// Runs the engine's `plat_init` and snapshots the result. Clocks and
/// randomness are fixed while it runs, so every compiler pre-initialises
/// the same bytes and they share one engine version.
async fn wizen(engine: &Engine) -> anyhow::Result<Vec<u8>> {
    let wasi = WasiCtxBuilder::new()
        .wall_clock(FixedClock)
        .monotonic_clock(FixedClock)
        .secure_random(FixedRandom(0x5eed))
        .insecure_random(FixedRandom(0x5eed))
        .insecure_random_seed(0)
        .build_p1();
    let mut linker: Linker<WasiP1Ctx> = Linker::new(engine);
    p1::add_to_linker_async(&mut linker, |wasi| wasi)?;
    let mut store = Store::new(engine, wasi);
    store.set_fuel(u64::MAX)?;
    let wasm = Wizer::new()
        .init_func(INIT_FUNC)
        .run(&mut store, RAW_ENGINE, async |store, module| {
            linker.instantiate_async(store, module).await
        })
        .await?;
    Ok(wasm)
}

/// A clock that always reads the epoch.
struct FixedClock;

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A fixed sequence of "random" bytes (xorshift), for the snapshot only.
struct FixedRandom(u64);

impl rand_core::TryRng for FixedRandom {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        self.try_next_u64().map(|n| n as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Ok(self.0)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}
