//! Dependency sets for Rust functions: the crates a function declares,
//! resolved to a lockfile, fetched checksum-verified, built in the sandbox
//! once per distinct set and cached (docs/dependencies.md, "Rust crates").
//!
//! Three steps, of which only the last runs code from the crates:
//! 1. [`DependencySets::resolve`] (trusted, on the host): cargo resolves the
//!    generated manifest ([`manifest`]) into a Cargo.lock with the registry's
//!    index alone; no crate is unpacked or run.
//! 2. Vendoring (trusted, on the host): `cargo vendor --locked` downloads
//!    each `.crate`, checks its SHA-256 against the lockfile's `checksum`
//!    and unpacks it with a `.cargo-checksum.json` of every file.
//! 3. The set build (untrusted: build scripts and proc macros): cargo inside
//!    the sandbox, `--offline --locked` on the read-only vendored sources
//!    (cargo checks every file against `.cargo-checksum.json` again), no
//!    network, into a private target folder. The rlibs, proc-macro
//!    libraries and an `--extern` index are staged like the prebuilt set
//!    ([`super::prebuilt`]) and renamed into `<cache_dir>/rust-sets/<key>/`.

mod manifest;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use plat_common::dependencies::Dependencies;
use sha2::{Digest, Sha256};
use tokio::process::Command;
use tracing::{info, instrument, warn};

use super::diagnostics::{self, REMAPPED_DEPS_PREFIX};
use super::prebuilt::{self, PrebuiltDeps, Staging, HOST_LIBS, TARGET, TARGET_LIBS};
use super::sandbox::{Sandbox, SandboxError, SetBuild, JOB_DIR, TOOLCHAIN_DIR, VENDOR_DIR};
use super::{CompileFailure, CompileLimits, InfraError, Resolution};

/// Part of a set's key: bump when the folder layout or the build changes.
const LAYOUT_VERSION: &str = "plat-rust-set/1";
/// Under the cache dir: the built sets, one folder per key.
const SETS_DIR: &str = "rust-sets";
/// Under the cache dir: the worker's own cargo home (registry index and
/// downloaded `.crate` files), never the operator's `~/.cargo`.
const CARGO_HOME_DIR: &str = "rust-cargo-home";
/// How much of cargo's error output a user sees.
const MAX_REPORT_BYTES: usize = 4000;

/// Resolves, fetches and builds Rust dependency sets; shared by all compiles
/// of a worker.
#[derive(Debug)]
pub(super) struct DependencySets {
    cache_dir: PathBuf,
    /// The host's Rust sysroot: its cargo resolves and vendors.
    sysroot: PathBuf,
    /// `rustc -vV`, part of every set's key (rlibs only link with the rustc that built them).
    rustc_version: String,
    /// One lock per set key, so a set is built once even when several
    /// compiles need it at the same time.
    building: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// How many sets this process built (not found in the cache).
    builds: AtomicU64,
}

/// Where a set build happens (inside its scratch folder on the host).
struct BuildDirs {
    /// Mounted writable at [`JOB_DIR`]: the crate, cargo's home, the target dir.
    job: PathBuf,
    /// Mounted read-only at [`VENDOR_DIR`].
    vendor: PathBuf,
    /// What becomes the set folder.
    staged: PathBuf,
}

impl DependencySets {
    pub(super) fn new(cache_dir: &Path, sysroot: &Path, rustc_version: &str) -> Self {
        Self {
            cache_dir: cache_dir.to_path_buf(),
            sysroot: sysroot.to_path_buf(),
            rustc_version: rustc_version.to_owned(),
            building: Mutex::new(HashMap::new()),
            builds: AtomicU64::new(0),
        }
    }

    /// How many sets this process has built so far.
    pub(super) fn builds(&self) -> u64 {
        self.builds.load(Ordering::Relaxed)
    }

    /// Resolves `dependencies` with cargo into a lockfile, or checks that
    /// `locked` (an earlier lockfile) still resolves them and keeps it.
    /// Runs no crate code.
    #[instrument(skip_all, err(Display))]
    pub(super) async fn resolve(
        &self,
        dependencies: &Dependencies,
        locked: Option<&str>,
        limits: &CompileLimits,
    ) -> Result<Resolution, CompileFailure> {
        let scratch = self.scratch("resolve").await?;
        let crate_dir = scratch.path().join("crate");
        write_crate(&crate_dir, &manifest::manifest(dependencies), locked)
            .await
            .map_err(|e| infra_io("writing the dependency manifest", e))?;
        // `fetch --locked` fails when the lockfile no longer matches the
        // manifest; it also downloads (and verifies) the crates vendoring needs.
        let args: &[&str] = if locked.is_some() {
            &["fetch", "--locked"]
        } else {
            &["generate-lockfile"]
        };
        let output = self.cargo(&crate_dir, args, limits).await?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(resolution_failure(
                &stderr,
                dependencies,
                locked.is_some(),
                scratch.path(),
            ));
        }
        let cargo_lock = tokio::fs::read_to_string(crate_dir.join("Cargo.lock"))
            .await
            .map_err(|e| infra_io("reading the resolved Cargo.lock", e))?;
        let lockfile = manifest::with_header(dependencies, &cargo_lock);
        let packages = manifest::packages(&lockfile, dependencies)
            .map_err(|e| infra_io("reading the resolved Cargo.lock", io::Error::other(e)))?;
        Ok(Resolution { lockfile, packages })
    }

    /// The folder of `resolution`'s built set, building it first (in the
    /// sandbox) unless it is cached.
    #[instrument(skip_all, err(Display))]
    pub(super) async fn ensure(
        &self,
        sandbox: &Sandbox,
        resolution: &Resolution,
        limits: &CompileLimits,
    ) -> Result<PrebuiltDeps, CompileFailure> {
        let (dependencies, manifest) = self.describe(resolution)?;
        let dir = self.set_dir(&manifest, &resolution.lockfile);
        if let Some(set) = load_if_present(&dir).await? {
            return Ok(set);
        }
        let key_lock = {
            let mut building = self.building.lock().expect("not poisoned");
            let key = dir.to_string_lossy().into_owned();
            building.entry(key).or_default().clone()
        };
        let _building = key_lock.lock().await;
        // Built by another compile while we waited.
        if let Some(set) = load_if_present(&dir).await? {
            return Ok(set);
        }
        let started = Instant::now();
        let scratch = self.scratch("build").await?;
        self.build(
            sandbox,
            scratch.path(),
            &dependencies,
            &manifest,
            &resolution.lockfile,
            limits,
        )
        .await?;
        match tokio::fs::rename(scratch.path().join("set"), &dir).await {
            Ok(()) => {
                self.builds.fetch_add(1, Ordering::Relaxed);
                info!(dir = %dir.display(), elapsed_ms = started.elapsed().as_millis() as u64, "built a Rust dependency set");
            }
            // Another worker process renamed the same set into place first.
            Err(_) if tokio::fs::try_exists(&dir).await.unwrap_or(false) => {}
            Err(e) => {
                return Err(infra_io(
                    "moving the built dependency set into the cache",
                    e,
                ))
            }
        }
        // The scratch folder holds cargo's target dir and the sources: remove
        // it off the async threads.
        let _ = tokio::task::spawn_blocking(move || drop(scratch)).await;
        load_if_present(&dir).await?.ok_or_else(|| {
            infra_io(
                "reading the built dependency set",
                io::Error::from(io::ErrorKind::NotFound),
            )
        })
    }

    /// The folder `resolution`'s set is (or will be) cached in.
    #[cfg(test)]
    pub(super) fn set_dir_of(&self, resolution: &Resolution) -> Result<PathBuf, CompileFailure> {
        let (_, manifest) = self.describe(resolution)?;
        Ok(self.set_dir(&manifest, &resolution.lockfile))
    }

    /// The declared dependencies (from the lockfile's header) and the manifest they give.
    fn describe(&self, resolution: &Resolution) -> Result<(Dependencies, String), CompileFailure> {
        let dependencies = manifest::declared(&resolution.lockfile)
            .map_err(|e| infra_io("reading the lockfile", io::Error::other(e)))?;
        let manifest = manifest::manifest(&dependencies);
        Ok((dependencies, manifest))
    }

    /// `<cache_dir>/rust-sets/<key>`, the key covering everything the built
    /// set depends on: the layout, the compiler, the manifest and the lockfile.
    fn set_dir(&self, manifest: &str, lockfile: &str) -> PathBuf {
        let mut hasher = Sha256::new();
        for part in [LAYOUT_VERSION, &self.rustc_version, manifest, lockfile] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        self.cache_dir
            .join(SETS_DIR)
            .join(hex::encode(&hasher.finalize()[..16]))
    }

    /// A fresh private folder next to the sets (same file system, so the
    /// built set is renamed, not copied).
    async fn scratch(&self, purpose: &str) -> Result<tempfile::TempDir, CompileFailure> {
        let sets = self.cache_dir.join(SETS_DIR);
        tokio::fs::create_dir_all(&sets)
            .await
            .map_err(|e| infra_io("creating the dependency set cache", e))?;
        tempfile::Builder::new()
            .prefix(&format!(".{purpose}-"))
            .tempdir_in(&sets)
            .map_err(|e| infra_io("creating a scratch folder for dependencies", e))
    }

    /// Vendors the set's crates, builds them in the sandbox and stages the
    /// result in `scratch/set`.
    async fn build(
        &self,
        sandbox: &Sandbox,
        scratch: &Path,
        dependencies: &Dependencies,
        manifest: &str,
        lockfile: &str,
        limits: &CompileLimits,
    ) -> Result<(), CompileFailure> {
        let dirs = BuildDirs {
            job: scratch.join("job"),
            vendor: scratch.join("vendor"),
            staged: scratch.join("set"),
        };
        let crate_dir = dirs.job.join("crate");
        write_crate(&crate_dir, manifest, Some(lockfile))
            .await
            .map_err(|e| infra_io("writing the dependency manifest", e))?;
        self.vendor(&crate_dir, &dirs.vendor, scratch, dependencies, limits)
            .await?;
        let finished = build_in_sandbox(sandbox, &dirs.job, &dirs.vendor, limits).await?;
        let stdout = String::from_utf8_lossy(&finished.stdout);
        if !finished.status.success() {
            let stderr = String::from_utf8_lossy(&finished.stderr);
            return Err(CompileFailure::User(build_failure(&stdout, &stderr)));
        }

        for dir in [dirs.staged.join(TARGET_LIBS), dirs.staged.join(HOST_LIBS)] {
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|e| infra_io("creating the set folder", e))?;
        }
        let exposed = manifest::exposed(dependencies);
        let exposed: Vec<&str> = exposed.iter().map(String::as_str).collect();
        let job = dirs.job.clone();
        let to_host = move |path: &Path| match path.strip_prefix(JOB_DIR) {
            Ok(inside) => job.join(inside),
            Err(_) => path.to_path_buf(),
        };
        let externs = prebuilt::stage_artifacts(
            &stdout,
            &Staging {
                target_out: &Path::new(JOB_DIR).join("target").join(TARGET),
                staged: &dirs.staged,
                root_crate: manifest::ROOT_CRATE,
                exposed: &exposed,
                to_host: &to_host,
            },
        )
        .await
        .map_err(|e| infra_io("staging the built dependency set", io::Error::other(e)))?;
        prebuilt::write_index(&dirs.staged, externs)
            .await
            .map_err(|e| infra_io("writing the set's index", io::Error::other(e)))
    }

    /// `cargo vendor --locked`: downloads each crate of the lockfile into
    /// the worker's cargo home (cargo checks its SHA-256 against the
    /// lockfile), then unpacks them into `vendor`.
    async fn vendor(
        &self,
        crate_dir: &Path,
        vendor: &Path,
        scratch: &Path,
        dependencies: &Dependencies,
        limits: &CompileLimits,
    ) -> Result<(), CompileFailure> {
        let vendor_arg = vendor.to_string_lossy().into_owned();
        let output = self
            .cargo(
                crate_dir,
                &["vendor", "--locked", "--versioned-dirs", &vendor_arg],
                limits,
            )
            .await?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(resolution_failure(&stderr, dependencies, true, scratch))
    }

    /// Runs the host's cargo (trusted: resolution and downloads only) in
    /// `crate_dir` with the worker's own cargo home.
    async fn cargo(
        &self,
        crate_dir: &Path,
        args: &[&str],
        limits: &CompileLimits,
    ) -> Result<std::process::Output, CompileFailure> {
        let mut cargo = Command::new(self.sysroot.join("bin").join("cargo"));
        cargo
            .args(args)
            .current_dir(crate_dir)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if prebuilt::is_build_override(&name) || name == "CARGO_HOME" {
                cargo.env_remove(&*name);
            }
        }
        cargo
            .env("CARGO_HOME", self.cache_dir.join(CARGO_HOME_DIR))
            .env("RUSTC", self.sysroot.join("bin").join("rustc"))
            .env("CARGO_TERM_COLOR", "never");
        match tokio::time::timeout(limits.timeout, cargo.output()).await {
            Ok(output) => output.map_err(|e| infra_io("running cargo", e)),
            Err(_) => Err(infra_io(
                "running cargo",
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "`cargo {}` took over {} s",
                        args[0],
                        limits.timeout.as_secs()
                    ),
                ),
            )),
        }
    }
}

/// The crate folder cargo works on: the manifest, an empty library and the
/// lockfile when there is one.
async fn write_crate(crate_dir: &Path, manifest: &str, lockfile: Option<&str>) -> io::Result<()> {
    tokio::fs::create_dir_all(crate_dir.join("src")).await?;
    tokio::fs::write(crate_dir.join("Cargo.toml"), manifest).await?;
    tokio::fs::write(crate_dir.join("src").join("lib.rs"), "").await?;
    if let Some(lockfile) = lockfile {
        tokio::fs::write(crate_dir.join("Cargo.lock"), lockfile).await?;
    }
    Ok(())
}

/// Runs `cargo build` for the target on the crate in `job/crate`, inside
/// the sandbox, offline, against the sources vendored in `vendor`.
pub(super) async fn build_in_sandbox(
    sandbox: &Sandbox,
    job: &Path,
    vendor: &Path,
    limits: &CompileLimits,
) -> Result<super::sandbox::Finished, CompileFailure> {
    write_build_config(job)
        .await
        .map_err(|e| infra_io("writing the set build's cargo config", e))?;
    let env = build_env();
    let args: Vec<String> = [
        "build",
        "--release",
        "--locked",
        "--offline",
        "--target",
        TARGET,
        "--message-format=json",
    ]
    .map(String::from)
    .into();
    match sandbox
        .build_set(
            &SetBuild {
                vendor,
                env: &env,
                timeout: limits.dependency_build_timeout,
            },
            job,
            &format!("{JOB_DIR}/crate"),
            &format!("{TOOLCHAIN_DIR}/bin/cargo"),
            &args,
            limits,
        )
        .await
    {
        Ok(finished) => Ok(finished),
        Err(SandboxError::TimedOut(limit)) => Err(CompileFailure::User(format!(
            "building the dependencies timed out after {} s (PLAT_DEPENDENCY_BUILD_TIMEOUT_SECS)",
            limit.as_secs()
        ))),
        Err(e) => Err(infra(InfraError::Sandbox(e))),
    }
}

/// Cargo's home inside the sandbox (`/build/home`), whose config replaces
/// crates.io with the vendored sources.
async fn write_build_config(job: &Path) -> io::Result<()> {
    let home = job.join("home");
    tokio::fs::create_dir_all(&home).await?;
    tokio::fs::write(
        home.join("config.toml"),
        format!(
            "[source.crates-io]\nreplace-with = \"vendored\"\n\n[source.vendored]\ndirectory = \"{VENDOR_DIR}\"\n"
        ),
    )
    .await
}

/// The whole environment of the sandboxed cargo. Paths in the rlibs are
/// remapped like the prebuilt set's, so a dependency's panic location or a
/// diagnostic names `/deps-src/...`, never a sandbox folder.
fn build_env() -> Vec<(&'static str, String)> {
    let rustflags = [
        format!("--remap-path-prefix={VENDOR_DIR}={REMAPPED_DEPS_PREFIX}vendor"),
        format!("--remap-path-prefix={JOB_DIR}={REMAPPED_DEPS_PREFIX}build"),
    ]
    .join("\u{1f}");
    vec![
        // Only `cc` and `ld` are there (the host linker of build scripts).
        ("PATH", "/usr/bin".to_owned()),
        ("CARGO_HOME", format!("{JOB_DIR}/home")),
        ("CARGO_TARGET_DIR", format!("{JOB_DIR}/target")),
        ("RUSTC", format!("{TOOLCHAIN_DIR}/bin/rustc")),
        ("CARGO_ENCODED_RUSTFLAGS", rustflags),
        ("CARGO_TERM_COLOR", "never".to_owned()),
        ("TMPDIR", "/tmp".to_owned()),
    ]
}

/// Reads the set in `dir` if it is there (it only ever appears complete).
async fn load_if_present(dir: &Path) -> Result<Option<PrebuiltDeps>, CompileFailure> {
    if !tokio::fs::try_exists(dir).await.unwrap_or(false) {
        return Ok(None);
    }
    prebuilt::load(dir)
        .await
        .map(Some)
        .map_err(|e| infra_io("reading a cached dependency set", io::Error::other(e)))
}

/// What a failed `cargo generate-lockfile` / `fetch` / `vendor` means: a
/// dependency the registry cannot satisfy is the user's to fix, anything
/// else (the registry unreachable, a full disk) is ours and retried.
fn resolution_failure(
    stderr: &str,
    dependencies: &Dependencies,
    locked: bool,
    scratch: &Path,
) -> CompileFailure {
    if let Some(name) = between(stderr, "no matching package named `", "`") {
        return CompileFailure::User(format!(
            "dependency `{name}`: there is no crate named `{name}` on crates.io"
        ));
    }
    if let Some(feature_line) = stderr
        .lines()
        .find(|l| l.contains("does not have that feature"))
    {
        let name = between(feature_line, "depends on `", "`").unwrap_or_default();
        let feature = between(feature_line, "with feature `", "`").unwrap_or_default();
        return CompileFailure::User(format!(
            "dependency `{name}`: the crate has no feature `{feature}` (at the version the requirement selects)"
        ));
    }
    if let Some(requirement) = between(
        stderr,
        "failed to select a version for the requirement `",
        "`",
    ) {
        let name = requirement.split(' ').next().unwrap_or(requirement);
        let wanted = dependencies
            .get(name)
            .map(|spec| spec.version().to_owned())
            .unwrap_or_else(|| requirement.to_owned());
        return CompileFailure::User(format!(
            "dependency `{name}`: no published version matches `{wanted}`{}",
            if dependencies.contains_key(name) {
                String::new()
            } else {
                " (required by another dependency, or by serde/serde_json which every function uses)".to_owned()
            }
        ));
    }
    if locked && stderr.contains("--locked") {
        return CompileFailure::User(
            "the version's lockfile no longer matches its dependencies (or the serde and \
             serde_json every function gets); save the function again to resolve them anew"
                .to_owned(),
        );
    }
    let scratch = scratch.to_string_lossy();
    let report = prebuilt::tail(&stderr.replace(&*scratch, "<function>"), MAX_REPORT_BYTES);
    infra_io(
        "resolving the dependencies with cargo",
        io::Error::other(report),
    )
}

/// The text between the first `start` and the next `end`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// The errors of a failed set build, for the user: each failing crate's
/// rendered compiler errors (from cargo's JSON) and cargo's own error lines.
/// Every path in them is a sandbox path.
fn build_failure(stdout: &str, stderr: &str) -> String {
    let mut report = String::from("building the dependencies failed:\n");
    for line in stdout.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-message" || message["message"]["level"] != "error" {
            continue;
        }
        let package = message["package_id"]
            .as_str()
            .map(prebuilt::package_name)
            .unwrap_or("?");
        let rendered = message["message"]["rendered"].as_str().unwrap_or_default();
        report.push_str(&format!("in crate `{package}`: {rendered}\n"));
    }
    for line in stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("error"))
    {
        report.push_str(line);
        report.push('\n');
    }
    let mut end = report.len().min(MAX_REPORT_BYTES);
    while !report.is_char_boundary(end) {
        end -= 1;
    }
    diagnostics::printable(&report[..end])
}

fn infra(error: InfraError) -> CompileFailure {
    warn!(%error, "dependency infrastructure failure");
    CompileFailure::Infra(error)
}

fn infra_io(context: &'static str, source: io::Error) -> CompileFailure {
    infra(InfraError::Io { context, source })
}
