//! Compiling user functions to WebAssembly.
//!
//! [`RustToolchain`] compiles a user's Rust `handler.rs` by calling `rustc` directly,
//! inside a bubblewrap sandbox, against a read-only set of prebuilt dependencies
//! (serde, serde_json), into a WASI preview 1 command. The recipe and its
//! measurements: docs/architecture.md, "Compile pipeline (Rust)".
//!
//! [`TypeScriptToolchain`] compiles a `handler.ts` in-process (oxc, then QuickJS
//! inside wasmtime) into a small module that links against the shared
//! JavaScript engine; see [`typescript`].
//!
//! [`Toolchains::build`] is one build from start to end: the operator's
//! [`policy`] (forbidden patterns, the dependency allowlist, advisories),
//! then the language's resolution of the declared dependencies into a
//! lockfile, then the compile (docs/dependencies.md).

mod diagnostics;
pub mod policy;
mod prebuilt;
mod recent;
pub mod rust;
mod rust_deps;
mod sandbox;
pub mod typescript;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod failure_tests {
    use std::error::Error as _;

    use super::{CompileFailure, InfraError, SandboxError};

    #[test]
    fn an_infrastructure_failure_keeps_its_cause() {
        let failure = CompileFailure::from(InfraError::Sandbox(SandboxError::Spawn(
            std::io::Error::new(std::io::ErrorKind::NotFound, "bwrap"),
        )));

        assert_eq!(
            failure.to_string(),
            "running rustc in the sandbox: could not start the sandbox (prlimit + bwrap): bwrap"
        );
        let sandbox = failure.source().expect("the sandbox's error");
        let io = sandbox.source().expect("the I/O error under it");
        let io = io.downcast_ref::<std::io::Error>().expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    }
}

use std::time::Duration;

use plat_common::dependencies::Dependencies;
use plat_common::Language;

pub use policy::DependencyPolicy;
pub use rust::{RustToolchain, ToolchainError};
pub use sandbox::SandboxError;
pub use typescript::TypeScriptToolchain;

/// A built function.
#[derive(Debug)]
pub struct BuiltFunction {
    /// The function's module.
    pub module: Vec<u8>,
    /// For a module that links against the JavaScript engine (see
    /// `plat_common::js_module`), the engine build; `None` when standalone.
    pub engine_sha256: Option<String>,
}

/// One build, as the worker read it from the job.
#[derive(Debug, Clone, Copy)]
pub struct BuildRequest<'a> {
    pub language: Language,
    /// The user's source, in clear.
    pub source: &'a str,
    /// What the version declares it depends on.
    pub dependencies: &'a Dependencies,
    /// The lockfile an earlier build of this version resolved to: a rebuild
    /// builds exactly that rather than resolving again.
    pub locked: Option<&'a str>,
}

/// Declared dependencies resolved to exact versions.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The lockfile, stored with the version and shown to its readers:
    /// Cargo.lock for Rust, Plat's npm lock (JSON) for TypeScript.
    pub lockfile: String,
    /// Every package it holds, direct or not.
    pub packages: Vec<ResolvedPackage>,
}

/// One package of a [`Resolution`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedPackage {
    pub name: String,
    /// An exact version (`1.11.1`).
    pub version: String,
    /// Whether the function declared it (not only a dependency's dependency).
    pub direct: bool,
}

/// How a build ended: the module or why not, and what it resolved and
/// reported on the way (kept for a failed build too).
#[derive(Debug)]
pub struct BuildOutput {
    pub result: Result<BuiltFunction, CompileFailure>,
    /// The resolved lockfile, when the version declares dependencies and
    /// resolution got that far.
    pub lockfile: Option<String>,
    /// What the build reported without failing (advisories under `warn`).
    pub warnings: Vec<String>,
}

/// Every language's toolchain, prepared once per worker process.
#[derive(Debug)]
pub struct Toolchains {
    pub rust: RustToolchain,
    pub typescript: TypeScriptToolchain,
    recent: recent::RecentResolutions,
}

impl Toolchains {
    /// Prepares both toolchains (see [`RustToolchain::prepare`] and
    /// [`TypeScriptToolchain::prepare`]).
    pub async fn prepare(cache_dir: &std::path::Path) -> anyhow::Result<Self> {
        let (rust, typescript) = tokio::join!(
            RustToolchain::prepare(cache_dir),
            TypeScriptToolchain::prepare()
        );
        let mut typescript = typescript?;
        typescript.set_npm(&typescript::packages::NpmSettings {
            store: cache_dir.join("npm"),
            ..Default::default()
        });
        Ok(Self {
            rust: rust?,
            typescript,
            recent: recent::RecentResolutions::default(),
        })
    }

    /// Builds `request` under the operator's `policy` and `limits`.
    pub async fn build(
        &self,
        request: BuildRequest<'_>,
        policy: &DependencyPolicy,
        limits: &CompileLimits,
    ) -> BuildOutput {
        let mut output = BuildOutput {
            result: Err(CompileFailure::User(String::new())),
            lockfile: None,
            warnings: Vec::new(),
        };
        output.result = self.build_into(request, policy, limits, &mut output).await;
        output
    }

    /// The version's own lockfile, else a resolution of the same set made a
    /// moment ago ([`recent`]), else a new one.
    async fn resolve(
        &self,
        request: BuildRequest<'_>,
        limits: &CompileLimits,
    ) -> Result<Resolution, CompileFailure> {
        let (language, dependencies) = (request.language, request.dependencies);
        if request.locked.is_none() {
            if let Some(resolution) = self.recent.get(language, dependencies) {
                return Ok(resolution);
            }
        }
        let resolution = match language {
            Language::Rust => {
                self.rust
                    .resolve(dependencies, request.locked, limits)
                    .await?
            }
            Language::TypeScript => {
                self.typescript
                    .resolve(dependencies, request.locked)
                    .await?
            }
        };
        self.recent.put(language, dependencies, &resolution);
        Ok(resolution)
    }

    async fn build_into(
        &self,
        request: BuildRequest<'_>,
        policy: &DependencyPolicy,
        limits: &CompileLimits,
        output: &mut BuildOutput,
    ) -> Result<BuiltFunction, CompileFailure> {
        policy.scan_source(request.language, request.source)?;
        let resolution = if request.dependencies.is_empty() {
            None
        } else {
            policy.check_declared(request.language, request.dependencies)?;
            let resolution = self.resolve(request, limits).await?;
            output.lockfile = Some(resolution.lockfile.clone());
            output.warnings = policy.check_resolved(
                request.language,
                request.dependencies,
                &resolution.packages,
            )?;
            Some(resolution)
        };
        let built = match request.language {
            Language::Rust => self
                .rust
                .compile(request.source, resolution.as_ref(), limits)
                .await
                .map(|module| BuiltFunction {
                    module,
                    engine_sha256: None,
                }),
            Language::TypeScript => {
                self.typescript
                    .compile(request.source, resolution.as_ref())
                    .await
            }
        }?;
        limits.check_module_size(built.module.len() as u64)?;
        Ok(built)
    }
}

/// Why a compile did not produce a module.
#[derive(Debug, thiserror::Error)]
pub enum CompileFailure {
    /// The user's code is at fault: the message is shown to the user as `compileError`
    /// (rustc diagnostics with line:column in THEIR file, named `handler.rs`; never host paths/content).
    #[error("{0}")]
    User(String),
    /// Our infrastructure failed: the job will be retried.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// What failed on our side of a compile, with its cause.
#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    /// A file or folder of the job could not be written or read.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. `reading the compiled module`.
        context: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The sandbox could not run the compiler.
    #[error("running rustc in the sandbox: {0}")]
    Sandbox(#[source] SandboxError),
    /// rustc ended without diagnostics, a known exit code or a signal.
    #[error("rustc failed without diagnostics ({status}): {stderr}")]
    RustcSilent {
        /// How it exited.
        status: std::process::ExitStatus,
        /// The end of its standard error, printable.
        stderr: String,
    },
    /// The TypeScript compile thread could not start.
    #[error("could not start a compile thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The TypeScript compile thread ended without a result (it panicked).
    #[error("the compile thread died")]
    ThreadDied,
    /// The job's sealed source or lockfile does not open with this worker's
    /// `PLAT_SECRETS_KEY`.
    #[error("opening the sealed source: {0}")]
    Sealed(#[source] plat_common::secrets::SecretsError),
}

/// Resource limits for one compile. The compiler runs under all of them at once;
/// whichever is hit first ends the compile as a [`CompileFailure::User`].
#[derive(Debug, Clone)]
pub struct CompileLimits {
    /// Wall-clock limit; the whole sandboxed process tree is killed when it expires.
    pub timeout: Duration,
    /// Address-space limit (`RLIMIT_AS`) of the compiler process. rustc maps about
    /// 500 MiB before compiling anything: below ~600 MiB every compile fails.
    pub memory_bytes: u64,
    /// Largest module a build may produce, in any language: every executor
    /// loads, compiles and caches each module it runs, and the database keeps
    /// one per version, so one function must not be able to make them huge.
    pub max_module_bytes: u64,
    /// Wall-clock limit of building one dependency set (its crates, build
    /// scripts and proc macros, in the sandbox); once built, a set is cached
    /// and later compiles take [`timeout`](Self::timeout) as usual.
    pub dependency_build_timeout: Duration,
}

/// The default of [`CompileLimits::max_module_bytes`]: real Rust functions
/// build to 100 KB–2 MB, TypeScript ones to a few KB.
pub const DEFAULT_MAX_MODULE_BYTES: u64 = 32 * 1024 * 1024;

impl Default for CompileLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(120),
            memory_bytes: 2 * 1024 * 1024 * 1024,
            max_module_bytes: DEFAULT_MAX_MODULE_BYTES,
            dependency_build_timeout: Duration::from_secs(600),
        }
    }
}

impl CompileLimits {
    /// A build whose module is `module_bytes` long fails, as the user's to
    /// fix, when that is over [`max_module_bytes`](Self::max_module_bytes).
    pub fn check_module_size(&self, module_bytes: u64) -> Result<(), CompileFailure> {
        if module_bytes <= self.max_module_bytes {
            return Ok(());
        }
        Err(CompileFailure::User(format!(
            "the built module is {module_bytes} bytes, over the limit of {} on a module's size \
             (PLAT_MAX_MODULE_BYTES)",
            human_bytes(self.max_module_bytes)
        )))
    }
}

/// "32 MiB" for a whole number of MiB, else exact bytes.
fn human_bytes(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}
