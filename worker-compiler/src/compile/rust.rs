//! Rust → wasm32-wasip1: the one-time preparation of a toolchain and per-job compiles.
//!
//! A job's folder holds the user's source verbatim as `src/handler.rs` and our
//! entry point as `src/main.rs` (template/main.rs: stdin JSON → handler → stdout, with
//! the exit-code contract the executor relies on). rustc runs on it directly, in the
//! sandbox, against the prebuilt dependencies; no cargo, no shared writable state.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::process::Command;
use tracing::{debug, info, instrument, warn};

use super::diagnostics::{self, Verdict, GENERATED_FILE, USER_FILE};
use super::prebuilt::{self, PrebuiltDeps, HOST_LIBS, TARGET, TARGET_LIBS};
use super::rust_deps::DependencySets;
use super::sandbox::{self, Finished, Sandbox, SandboxError, DEPS_DIR, JOB_DIR, TOOLCHAIN_DIR};
use super::{CompileFailure, CompileLimits, InfraError, Resolution};
use plat_common::dependencies::Dependencies;

/// The generated entry point around the user's handler.
const ENTRY_POINT: &str = include_str!("template/main.rs");
/// rustc's working directory inside the sandbox: the folder holding `handler.rs`, so
/// diagnostics and panic locations name the user's file as just `handler.rs`.
const SOURCE_DIR: &str = "/build/src";
const OUTPUT: &str = "out/handler.wasm";
/// A handler every working toolchain compiles; `prepare` compiles it once.
const SELF_TEST_SOURCE: &str = r#"
use serde::Deserialize;
#[derive(Deserialize)]
pub struct Input { name: Option<String> }
pub fn handler(input: Input) -> Result<serde_json::Value, String> {
    Ok(serde_json::json!({ "greeting": format!("Hello, {}!", input.name.as_deref().unwrap_or("world")) }))
}
"#;
/// An internal compiler error depends on the code, not on the machine: a retry would
/// crash the same way, so it is the user's to work around.
const ICE_MESSAGE: &str = "the Rust compiler crashed on this code (internal compiler error); try writing the failing construct differently";
/// Job folders older than this were left by a worker killed mid-compile (a compile
/// removes its own folder when it ends, and none runs this long).
const STALE_JOB_AGE: Duration = Duration::from_secs(3600);
/// POSIX signals rlimits raise; bwrap exits with 128 + the signal that killed its child.
const SIGXCPU: i32 = 24;
const SIGXFSZ: i32 = 25;

/// Why the Rust toolchain cannot be used. Each message says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    #[error("could not run `rustc` ({0}); install Rust with rustup (https://rustup.rs)")]
    RustcMissing(#[source] io::Error),
    #[error("`{command}` failed: {stderr}")]
    CommandFailed { command: String, stderr: String },
    #[error("the wasm32-wasip1 target is not installed for the Rust toolchain at {}; install it with `rustup target add wasm32-wasip1`", sysroot.display())]
    TargetMissing { sysroot: PathBuf },
    #[error("`{tool}` was not found in PATH; install it with `{install}`")]
    ToolMissing {
        tool: &'static str,
        install: &'static str,
    },
    #[error("building the Rust dependency allowlist (serde, serde_json) failed:\n{log}")]
    DepsBuild { log: String },
    #[error("the prebuilt Rust dependencies in {} are unusable ({reason}); delete that folder and restart to rebuild it", dir.display())]
    CorruptCache { dir: PathBuf, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("the compile sandbox does not work on this machine (bubblewrap needs user namespaces): a test compile failed: {0}")]
    SelfTest(String),
}

/// Wraps an I/O error with what we were doing.
pub(super) fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> ToolchainError {
    let context = context.into();
    move |source| ToolchainError::Io { context, source }
}

/// A Rust toolchain ready to compile user handlers: immutable after [`prepare`](Self::prepare),
/// so one instance is shared (e.g. in an `Arc`) by all concurrent compiles.
#[derive(Debug)]
pub struct RustToolchain {
    sandbox: Sandbox,
    /// rustc's arguments, identical for every job (all paths are inside the sandbox).
    rustc_args: Vec<String>,
    /// Parent of the per-job folders; mode 0700 so other local users cannot read sources.
    jobs_dir: PathBuf,
    /// Functions' declared crates: resolved, built once per set, cached.
    sets: DependencySets,
}

impl RustToolchain {
    /// One-time trusted step, run at worker start: finds the rustc sysroot (`rustc --print sysroot`), checks the
    /// wasm32-wasip1 target and `bwrap` are present, and builds the dependency allowlist (serde with derive,
    /// serde_json) once into `cache_dir/rust-deps-<key>` (reused if present; see `prebuilt`). Ends with a test
    /// compile in the sandbox, so a machine where the sandbox cannot work fails here, not on the first job.
    /// Needs network access to crates.io the first time.
    #[instrument(skip_all, fields(cache_dir = %cache_dir.display()), err)]
    pub async fn prepare(cache_dir: &Path) -> Result<Self, ToolchainError> {
        let started = Instant::now();
        let sysroot = rustc_sysroot().await?;
        if !sysroot
            .join("lib/rustlib")
            .join(TARGET)
            .join("lib")
            .is_dir()
        {
            return Err(ToolchainError::TargetMissing { sysroot });
        }
        let prlimit = sandbox::find_program("prlimit").ok_or(ToolchainError::ToolMissing {
            tool: "prlimit",
            install: "apt-get install util-linux",
        })?;
        let bwrap = sandbox::find_program("bwrap").ok_or(ToolchainError::ToolMissing {
            tool: "bwrap",
            install: "apt-get install bubblewrap",
        })?;
        let rustc_version = run_trusted(Command::new(sysroot.join("bin/rustc")).arg("-vV")).await?;

        tokio::fs::create_dir_all(cache_dir)
            .await
            .map_err(io_error(format!(
                "creating the cache folder {}",
                cache_dir.display()
            )))?;
        let deps = prebuilt::ensure(cache_dir, &sysroot, &rustc_version).await?;
        let jobs_dir = cache_dir.join("jobs");
        create_private_dir(&jobs_dir)
            .await
            .map_err(io_error(format!("creating {}", jobs_dir.display())))?;
        let stale = jobs_dir.clone();
        let _ = tokio::task::spawn_blocking(move || remove_stale_jobs(&stale)).await;
        let sandbox = Sandbox::new(prlimit, bwrap, &sysroot, &deps.dir).map_err(io_error(
            format!("listing the toolchain libraries in {}", sysroot.display()),
        ))?;

        let toolchain = Self {
            sandbox,
            rustc_args: rustc_args(&deps),
            jobs_dir,
            sets: DependencySets::new(cache_dir, &sysroot, &rustc_version),
        };
        toolchain
            .compile(SELF_TEST_SOURCE, None, &CompileLimits::default())
            .await
            .map_err(|e| ToolchainError::SelfTest(e.to_string()))?;
        info!(elapsed_ms = started.elapsed().as_millis() as u64, deps = %deps.dir.display(), "Rust toolchain ready");
        Ok(toolchain)
    }

    /// Resolves `dependencies` (plus serde and serde_json, which every
    /// function gets) to exact crate versions with cargo, or checks that
    /// `locked`, an earlier resolution of them, still holds and keeps it.
    /// The lockfile's first lines name the declared dependencies, so it alone
    /// describes the set [`compile`](Self::compile) builds. Runs no crate code.
    pub async fn resolve(
        &self,
        dependencies: &Dependencies,
        locked: Option<&str>,
        limits: &CompileLimits,
    ) -> Result<Resolution, CompileFailure> {
        self.sets.resolve(dependencies, locked, limits).await
    }

    /// How many dependency sets this toolchain has built (rather than found
    /// in the cache) since it was prepared.
    pub fn dependency_set_builds(&self) -> u64 {
        self.sets.builds()
    }

    /// The sandbox compiles run in.
    #[cfg(test)]
    pub(super) fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// The cache folder of `resolution`'s dependency set.
    #[cfg(test)]
    pub(super) fn dependency_set_dir(
        &self,
        resolution: &Resolution,
    ) -> Result<PathBuf, CompileFailure> {
        self.sets.set_dir_of(resolution)
    }

    /// Compile one user source against `resolution`'s dependency set (built
    /// in the sandbox first unless cached), or against serde and serde_json
    /// alone when `None`. Takes the source text, returns the wasm bytes (a
    /// WASI preview1 command).
    #[instrument(skip_all, fields(source_bytes = source.len()))]
    pub async fn compile(
        &self,
        source: &str,
        resolution: Option<&Resolution>,
        limits: &CompileLimits,
    ) -> Result<Vec<u8>, CompileFailure> {
        let set = match resolution {
            Some(resolution) => Some(self.sets.ensure(&self.sandbox, resolution, limits).await?),
            None => None,
        };
        let set_args = set.as_ref().map(rustc_args);
        let (deps_dir, args) = match (&set, &set_args) {
            (Some(set), Some(args)) => (Some(set.dir.as_path()), args),
            _ => (None, &self.rustc_args),
        };
        let started = Instant::now();
        let job = self
            .create_job(source)
            .await
            .map_err(|e| infra_io("preparing the job folder", e))?;
        let rustc = format!("{TOOLCHAIN_DIR}/bin/rustc");
        let run = match deps_dir {
            Some(deps) => {
                self.sandbox
                    .run_with_deps(deps, job.path(), SOURCE_DIR, &rustc, args, limits)
                    .await
            }
            None => {
                self.sandbox
                    .run(job.path(), SOURCE_DIR, &rustc, args, limits)
                    .await
            }
        };
        let finished = match run {
            Ok(finished) => finished,
            Err(SandboxError::TimedOut(limit)) => {
                return Err(CompileFailure::User(format!(
                    "compilation timed out after {} s",
                    limit.as_secs()
                )))
            }
            Err(e) => return Err(infra(InfraError::Sandbox(e))),
        };
        interpret(&finished, limits)?;
        // Checked before reading, so an oversized module is never held in memory.
        let output_bytes = tokio::fs::metadata(job.path().join(OUTPUT))
            .await
            .map_err(|e| infra_io("reading the compiled module", e))?
            .len();
        limits.check_module_size(output_bytes)?;
        let wasm = tokio::fs::read(job.path().join(OUTPUT))
            .await
            .map_err(|e| infra_io("reading the compiled module", e))?;
        debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            wasm_bytes = wasm.len(),
            "compiled"
        );
        // Removing the job folder is a few small files: cheap enough to do inline.
        drop(job);
        Ok(wasm)
    }

    /// A fresh private folder with `src/handler.rs` (the user's source, verbatim, so
    /// rustc's line:column are the user's), `src/main.rs` and an empty `out/`.
    #[instrument(skip_all, err)]
    async fn create_job(&self, source: &str) -> io::Result<tempfile::TempDir> {
        let job = tempfile::Builder::new()
            .prefix("job-")
            .tempdir_in(&self.jobs_dir)?;
        tokio::fs::create_dir(job.path().join("src")).await?;
        tokio::fs::create_dir(job.path().join("out")).await?;
        tokio::fs::write(job.path().join("src").join(USER_FILE), source).await?;
        tokio::fs::write(job.path().join("src").join(GENERATED_FILE), ENTRY_POINT).await?;
        Ok(job)
    }
}

/// Decides what a finished rustc run means.
fn interpret(finished: &Finished, limits: &CompileLimits) -> Result<(), CompileFailure> {
    if finished.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&finished.stderr);
    match finished.status.code() {
        Some(code) if code == 128 + SIGXCPU => {
            return Err(CompileFailure::User(format!(
                "compilation timed out after {} s (CPU time limit)",
                limits.timeout.as_secs()
            )))
        }
        Some(code) if code == 128 + SIGXFSZ => {
            return Err(CompileFailure::User(
                "compilation produced a file over the size limit".to_owned(),
            ))
        }
        _ => {}
    }
    if ran_out_of_memory(&stderr) {
        return Err(CompileFailure::User(format!(
            "compilation ran out of memory (limit {} MiB); look for very large constants or macros that expand without bound",
            limits.memory_bytes / (1024 * 1024)
        )));
    }
    match diagnostics::judge(&stderr) {
        Verdict::UserErrors(report) => Err(CompileFailure::User(report)),
        Verdict::InternalCompilerError => Err(CompileFailure::User(ICE_MESSAGE.to_owned())),
        // Killed by a signal (bwrap exits with 128 + its number) with nothing to say:
        // a crash on this code (e.g. a stack overflow), which a retry would repeat.
        Verdict::NoErrors => match finished.status.code() {
            // rustc's exit code for a panic, when it did not get to report an ICE.
            Some(101) => Err(CompileFailure::User(ICE_MESSAGE.to_owned())),
            Some(code @ 129..=159) => Err(CompileFailure::User(format!(
                "the Rust compiler crashed on this code (signal {}); it may have overflowed its stack (very deep nesting) or exceeded the {} MiB memory limit",
                code - 128,
                limits.memory_bytes / (1024 * 1024)
            ))),
            _ => {
                Err(infra(InfraError::RustcSilent {
                    status: finished.status,
                    stderr: plain_lines(&stderr, 1000),
                }))
            }
        },
    }
}

/// Out-of-memory reports from the allocator, LLVM, the loader or thread creation (all
/// seen under `RLIMIT_AS`). Only non-JSON lines are searched: diagnostics quote the
/// user's source, which may contain these words.
fn ran_out_of_memory(stderr: &str) -> bool {
    const MARKERS: &[&str] = &[
        "memory allocation of",
        "out of memory",
        "Cannot allocate memory",
        "Allocation failed",
        "bad_alloc",
        "failed to map segment",
        "failed to spawn",
    ];
    stderr
        .lines()
        .filter(|line| !line.starts_with('{'))
        .any(|line| MARKERS.iter().any(|marker| line.contains(marker)))
}

/// The last `max` bytes of stderr's non-JSON lines (bwrap's and rustc's own messages).
fn plain_lines(stderr: &str, max: usize) -> String {
    let plain: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.starts_with('{'))
        .collect();
    let plain = plain.join("\n");
    let mut start = plain.len().saturating_sub(max);
    while !plain.is_char_boundary(start) {
        start += 1;
    }
    diagnostics::printable(&plain[start..])
}

fn infra(error: InfraError) -> CompileFailure {
    warn!(%error, "compile infrastructure failure");
    CompileFailure::Infra(error)
}

fn infra_io(context: &'static str, source: io::Error) -> CompileFailure {
    infra(InfraError::Io { context, source })
}

/// rustc's arguments; the flags match the allowlist's release profile
/// (deps/Cargo.toml), or its rlibs would not link.
fn rustc_args(deps: &PrebuiltDeps) -> Vec<String> {
    let mut args: Vec<String> = [
        "--edition=2021",
        "--crate-name=plat_function",
        "--crate-type=bin",
        &format!("--target={TARGET}"),
        "-Copt-level=s",
        "-Ccodegen-units=16",
        "-Cpanic=abort",
        "-Cstrip=symbols",
        "-Cdebuginfo=0",
        // Plain JSON: we read each diagnostic's `rendered` text, without ANSI colours.
        "--error-format=json",
        // rustc would locate its sysroot through /proc/self/exe, absent in the sandbox.
        &format!("--sysroot={TOOLCHAIN_DIR}"),
        // Paths are already relative (rustc runs in SOURCE_DIR); this also shortens
        // any absolute reference to the job's own files.
        &format!("--remap-path-prefix={SOURCE_DIR}/="),
        "-L",
        &format!("dependency={DEPS_DIR}/{TARGET_LIBS}"),
        "-L",
        &format!("dependency={DEPS_DIR}/{HOST_LIBS}"),
    ]
    .map(String::from)
    .into();
    for (name, path) in &deps.externs {
        args.push(format!("--extern={name}={DEPS_DIR}/{path}"));
    }
    args.push("-o".to_owned());
    args.push(format!("{JOB_DIR}/{OUTPUT}"));
    args.push(GENERATED_FILE.to_owned());
    args
}

/// The sysroot of the `rustc` on PATH (rustup's proxy resolves the toolchain here,
/// once; afterwards we call the real binaries in the sysroot directly).
async fn rustc_sysroot() -> Result<PathBuf, ToolchainError> {
    let output = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .await
        .map_err(ToolchainError::RustcMissing)?;
    if !output.status.success() {
        return Err(ToolchainError::CommandFailed {
            command: "rustc --print sysroot".to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim(),
    ))
}

/// Runs a trusted host command and returns its stdout.
async fn run_trusted(command: &mut Command) -> Result<String, ToolchainError> {
    let description = format!("{:?}", command.as_std());
    let output = command
        .output()
        .await
        .map_err(io_error(format!("running {description}")))?;
    if !output.status.success() {
        return Err(ToolchainError::CommandFailed {
            command: description,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

async fn create_private_dir(dir: &Path) -> io::Result<()> {
    tokio::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .await?;
    // The mode above only applies when the folder is new.
    tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).await
}

/// Best effort: a folder we cannot remove now is retried at the next start.
fn remove_stale_jobs(jobs_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(jobs_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let age = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok());
        if age.is_some_and(|age| age > STALE_JOB_AGE)
            && entry.file_name().to_string_lossy().starts_with("job-")
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
