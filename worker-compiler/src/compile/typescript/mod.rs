//! TypeScript → a small WebAssembly module that links against the shared
//! JavaScript engine. All in-process, no Node:
//!
//! 1. [`transform`]: oxc strips the types (and lowers enums, parameter
//!    properties, namespaces), reporting errors at the user's line and
//!    column, and keeps a [`PositionMap`] back to `handler.ts`.
//! 2. [`engine`]: QuickJS, inside wasmtime, compiles the JavaScript to
//!    bytecode, so JavaScript's own early errors also fail the build.
//! 3. [`artifact`]: the bytecode and the map become a module of a few
//!    hundred bytes, recording which engine build it needs.
//!
//! A function that declares npm packages has them resolved to a lockfile and
//! installed ([`packages`]), and its transformed code bundled with them
//! ([`bundle`]) between steps 1 and 2.
//!
//! The route and its measurements: docs/architecture.md, "TypeScript".

mod artifact;
mod bundle;
mod engine;
mod nesting;
pub mod packages;
mod position_map;
mod source_text;
mod transform;

#[cfg(test)]
mod package_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::oneshot;

use self::engine::{EngineCompileError, JsEngine};
use self::packages::{NpmSettings, Packages};
use self::position_map::PositionMap;
use self::source_text::SourceText;
use super::{BuiltFunction, CompileFailure, InfraError, Resolution};
use plat_common::dependencies::Dependencies;

/// The stack of the thread that parses and transforms a source. oxc's
/// parser and visitors recurse once per nesting level of the program, so a
/// hostile source of deeply nested brackets or operators would overflow a
/// normal thread stack and abort the worker. The nesting limits ([`nesting`])
/// keep every source far inside this; the memory is only reserved, and
/// pages are committed only as deep as a compile actually goes.
const TRANSFORM_STACK_BYTES: usize = 256 << 20;

/// Compiles TypeScript handlers. Immutable after [`prepare`](Self::prepare):
/// share one instance between concurrent compiles.
pub struct TypeScriptToolchain {
    engine: Arc<JsEngine>,
    packages: Packages,
}

impl std::fmt::Debug for TypeScriptToolchain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypeScriptToolchain")
            .field("engine_sha256", &self.engine.sha256)
            .finish_non_exhaustive()
    }
}

impl TypeScriptToolchain {
    /// Pre-initialises the engine built into this binary (about 1.5 s).
    pub async fn prepare() -> anyhow::Result<Self> {
        let started = std::time::Instant::now();
        let engine = JsEngine::prepare().await?;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            engine_sha256 = %engine.sha256,
            "TypeScript toolchain ready"
        );
        Ok(Self {
            engine: Arc::new(engine),
            packages: Packages::new(&NpmSettings::default()),
        })
    }

    /// Takes npm packages from `settings` (the registry and the package
    /// store) rather than the defaults: the public registry and a store in
    /// the system's temporary folder.
    pub fn set_npm(&mut self, settings: &NpmSettings) {
        self.packages = Packages::new(settings);
    }

    /// The engine build functions compiled here link against: its sha256
    /// (hex) and its module, which must be stored where executors find it
    /// (`js_engines`) before any function built with it is READY.
    pub fn engine(&self) -> (&str, &[u8]) {
        (&self.engine.sha256, &self.engine.wasm)
    }

    /// Resolves `dependencies` (npm package → range) to exact versions and
    /// their dependencies, or takes `locked` when it resolved the same ranges.
    pub async fn resolve(
        &self,
        dependencies: &Dependencies,
        locked: Option<&str>,
    ) -> Result<Resolution, CompileFailure> {
        let lock = self.packages.resolve(dependencies, locked).await?;
        Ok(Resolution {
            lockfile: lock.to_text(),
            packages: packages::resolved_packages(&lock),
        })
    }

    /// Builds one handler, with `resolution`'s packages bundled in. `Err(User)`
    /// carries a message with positions in the user's `handler.ts`.
    pub async fn compile(
        &self,
        source: &str,
        resolution: Option<&Resolution>,
    ) -> Result<BuiltFunction, CompileFailure> {
        match resolution {
            None => self.compile_alone(source).await,
            Some(resolution) => self.compile_with_packages(source, resolution).await,
        }
    }

    async fn compile_alone(&self, source: &str) -> Result<BuiltFunction, CompileFailure> {
        let engine = self.engine.clone();
        let source = source.to_owned();
        on_transform_thread(move || build(&engine, &source)).await?
    }

    async fn compile_with_packages(
        &self,
        source: &str,
        resolution: &Resolution,
    ) -> Result<BuiltFunction, CompileFailure> {
        let lock = packages::Lockfile::parse(&resolution.lockfile).ok_or_else(|| {
            CompileFailure::User(
                "the function's npm lockfile is not one this compiler can read".to_owned(),
            )
        })?;
        // The user's own errors first, before anything is downloaded.
        let direct: BTreeSet<String> = lock.direct.keys().cloned().collect();
        let owned = source.to_owned();
        let transformed = on_transform_thread(move || {
            nesting::check(&owned)?;
            transform::transform_with_packages(&owned, &direct)
        })
        .await?
        .map_err(CompileFailure::User)?;
        let tree = self.packages.install(&lock).await?;
        let bundled = bundle::bundle(&tree, &transformed.javascript, &transformed.map)
            .await
            .map_err(CompileFailure::User)?;
        let engine = self.engine.clone();
        let source = source.to_owned();
        tokio::task::spawn_blocking(move || {
            finish(&engine, &source, &bundled.javascript, &bundled.map)
        })
        .await
        .map_err(|_| InfraError::ThreadDied)?
    }
}

/// Runs `work` on a thread with [`TRANSFORM_STACK_BYTES`] of stack.
async fn on_transform_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CompileFailure> {
    let (done, result) = oneshot::channel();
    std::thread::Builder::new()
        .name("plat-ts-compile".into())
        .stack_size(TRANSFORM_STACK_BYTES)
        .spawn(move || {
            let _ = done.send(work());
        })
        .map_err(InfraError::Thread)?;
    Ok(result.await.map_err(|_| InfraError::ThreadDied)?)
}

fn build(engine: &JsEngine, source: &str) -> Result<BuiltFunction, CompileFailure> {
    nesting::check(source).map_err(CompileFailure::User)?;
    let transformed = transform::transform(source).map_err(CompileFailure::User)?;
    finish(engine, source, &transformed.javascript, &transformed.map)
}

/// Compiles `javascript` (whose positions `map` takes back to `source`) to
/// bytecode and wraps it in the function's module.
fn finish(
    engine: &JsEngine,
    source: &str,
    javascript: &str,
    map: &PositionMap,
) -> Result<BuiltFunction, CompileFailure> {
    let bytecode = engine.compile(javascript).map_err(|error| match error {
        EngineCompileError::Rejected(message) => {
            CompileFailure::User(locate(&SourceText::new(source), map, &message))
        }
        EngineCompileError::Limit(message) => CompileFailure::User(message),
    })?;
    let module = artifact::emit(&bytecode, &map.to_bytes(), &engine.sha256)
        .map_err(|e| CompileFailure::User(e.to_string()))?;
    Ok(BuiltFunction {
        module,
        engine_sha256: Some(engine.sha256.clone()),
    })
}

/// QuickJS's compile error (`SyntaxError: … at handler.js:L:C`) with its
/// position moved to the user's TypeScript.
fn locate(text: &SourceText, map: &PositionMap, message: &str) -> String {
    let mut lines = message.lines();
    let headline = lines.next().unwrap_or("SyntaxError");
    let position = message.rfind("handler.js:").and_then(|at| {
        let mut numbers = message[at + "handler.js:".len()..]
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u32>().ok());
        Some((numbers.next()??, numbers.next()??))
    });
    // QuickJS counts lines and columns from 1; the map from 0.
    match position
        .and_then(|(line, column)| map.lookup(line.saturating_sub(1), column.saturating_sub(1)))
    {
        Some((line, column)) => text.message_at_position(line, column, headline),
        None => format!("{}: error: {headline}", transform::USER_FILE),
    }
}
