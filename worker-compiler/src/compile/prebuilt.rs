//! The dependency allowlist (serde with derive, serde_json), built once per toolchain
//! into a folder that every compile then mounts read-only.
//!
//! Compiles never share a writable cargo target dir: two jobs on one target dir
//! were seen to receive each other's `.wasm`, and user code could `include_bytes!` a
//! previous tenant's artifact (docs/architecture.md, "Compile pipeline (Rust)"). Instead, this
//! trusted step runs cargo once, keeps only the artifacts rustc needs, and records the
//! `--extern` flags; compiles then call rustc directly.
//!
//! Layout of `<cache_dir>/rust-deps-<key>/`:
//! - `deps/`: the wasm32-wasip1 rlibs (serde, serde_core, serde_json, itoa, ...);
//! - `host-deps/`: the host proc-macro libraries (serde_derive's `.so`);
//! - `plat-deps.json`: the `--extern` crates, with paths relative to the folder.
//!
//! `<key>` hashes `rustc -vV`, the allowlist's Cargo.toml and Cargo.lock: rustc refuses
//! rlibs built by another compiler version, so a toolchain update gets a new folder.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::process::Command;
use tracing::{info, instrument};

use super::diagnostics::REMAPPED_DEPS_PREFIX;
use super::rust::{io_error, ToolchainError};

pub(super) const MANIFEST: &str = include_str!("deps/Cargo.toml");
const LOCKFILE: &str = include_str!("deps/Cargo.lock");
/// Part of the cache key: bump when the folder layout or the build flags change.
const LAYOUT_VERSION: &str = "plat-rust-deps/1";
/// Crates user code may name. Their dependencies are in the folder too, but rustc
/// only finds those as dependencies (`-L dependency=`), never by `extern crate`.
const ALLOWED_CRATES: &[&str] = &["serde", "serde_json"];
/// The allowlist crate itself (an empty library), which user code must not see.
const ALLOWLIST_CRATE: &str = "plat_rust_deps";
pub(super) const INDEX_FILE: &str = "plat-deps.json";
/// Subfolder with the target's rlibs.
pub(super) const TARGET_LIBS: &str = "deps";
/// Subfolder with host proc-macro libraries.
pub(super) const HOST_LIBS: &str = "host-deps";
/// The only target we compile for.
pub(super) const TARGET: &str = "wasm32-wasip1";

/// A ready folder of prebuilt dependencies.
#[derive(Debug, Clone)]
pub(super) struct PrebuiltDeps {
    /// The folder on the host.
    pub dir: PathBuf,
    /// Crate name → rlib path relative to `dir`, for `--extern`.
    pub externs: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct Index {
    externs: BTreeMap<String, String>,
}

/// The key that names the folder for a compiler (`rustc -vV` output) and this allowlist.
pub(super) fn cache_key(rustc_version: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [LAYOUT_VERSION, rustc_version, MANIFEST, LOCKFILE] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex::encode(&hasher.finalize()[..8])
}

/// Returns the folder for this toolchain, building it first if no worker has yet.
///
/// Safe when several workers (or test binaries) start at once: each builds in its own
/// scratch folder next to the final one and renames it into place; rename(2) onto a
/// non-empty folder fails, so the loser drops its build and uses the winner's.
#[instrument(skip_all, fields(cache_dir = %cache_dir.display()), err)]
pub(super) async fn ensure(
    cache_dir: &Path,
    sysroot: &Path,
    rustc_version: &str,
) -> Result<PrebuiltDeps, ToolchainError> {
    let dir = cache_dir.join(format!("rust-deps-{}", cache_key(rustc_version)));
    if tokio::fs::try_exists(&dir).await.unwrap_or(false) {
        return load(&dir).await;
    }

    let scratch = tempfile::Builder::new()
        .prefix(".rust-deps-build-")
        .tempdir_in(cache_dir)
        .map_err(io_error(
            "creating a scratch folder for the dependency build",
        ))?;
    let staged = build(scratch.path(), sysroot).await?;
    match tokio::fs::rename(&staged, &dir).await {
        Ok(()) => info!(dir = %dir.display(), "built the Rust dependency allowlist"),
        Err(_) if tokio::fs::try_exists(&dir).await.unwrap_or(false) => {
            info!(dir = %dir.display(), "another worker built the Rust dependency allowlist first; using theirs");
        }
        Err(e) => {
            return Err(io_error(format!(
                "moving the dependency build to {}",
                dir.display()
            ))(e))
        }
    }
    // The scratch folder holds cargo's whole target dir (tens of MB): remove it off
    // the async threads.
    let _ = tokio::task::spawn_blocking(move || drop(scratch)).await;
    load(&dir).await
}

/// Builds the allowlist with cargo under `scratch` and stages the artifacts rustc needs
/// in `scratch/prebuilt`, which it returns.
#[instrument(skip_all, err)]
async fn build(scratch: &Path, sysroot: &Path) -> Result<PathBuf, ToolchainError> {
    let crate_dir = scratch.join("crate");
    let target_dir = scratch.join("target");
    let staged = scratch.join("prebuilt");
    write_allowlist_crate(&crate_dir, &staged).await?;
    let built = run_cargo(scratch, sysroot, &crate_dir, &target_dir).await?;
    let externs = stage_artifacts(
        &built,
        &Staging {
            target_out: &target_dir.join(TARGET),
            staged: &staged,
            root_crate: ALLOWLIST_CRATE,
            exposed: ALLOWED_CRATES,
            to_host: &|path| path.to_path_buf(),
        },
    )
    .await?;
    if let Some(missing) = ALLOWED_CRATES.iter().find(|c| !externs.contains_key(**c)) {
        return Err(ToolchainError::DepsBuild {
            log: format!("cargo reported no wasm32-wasip1 rlib for `{missing}`"),
        });
    }
    write_index(&staged, externs).await?;
    Ok(staged)
}

/// Writes the `--extern` index of a staged folder.
pub(super) async fn write_index(
    staged: &Path,
    externs: BTreeMap<String, String>,
) -> Result<(), ToolchainError> {
    let index = serde_json::to_vec_pretty(&Index { externs })
        .map_err(|e| io_error("encoding the dependency index")(io::Error::other(e)))?;
    let index_path = staged.join(INDEX_FILE);
    tokio::fs::write(&index_path, index)
        .await
        .map_err(io_error(format!("writing {}", index_path.display())))
}

/// Where a build's artifacts go and which of them user code may name.
pub(super) struct Staging<'a> {
    /// cargo's output folder for the target, as cargo names it in its messages.
    pub target_out: &'a Path,
    /// The folder that receives [`TARGET_LIBS`] and [`HOST_LIBS`] (both exist).
    pub staged: &'a Path,
    /// The library of the crate cargo built (never exposed to user code).
    pub root_crate: &'a str,
    /// Packages whose library gets an `--extern` entry.
    pub exposed: &'a [&'a str],
    /// Maps a path in cargo's messages to the host (cargo may have run in a sandbox).
    pub to_host: &'a (dyn Fn(&Path) -> PathBuf + Sync),
}

/// The allowlist's crate (its manifest and lockfile, an empty library) and
/// the empty folders the build's libraries are staged in.
async fn write_allowlist_crate(crate_dir: &Path, staged: &Path) -> Result<(), ToolchainError> {
    for dir in [
        crate_dir.join("src"),
        staged.join(TARGET_LIBS),
        staged.join(HOST_LIBS),
    ] {
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(io_error(format!("creating {}", dir.display())))?;
    }
    for (file, contents) in [
        ("Cargo.toml", MANIFEST),
        ("Cargo.lock", LOCKFILE),
        ("src/lib.rs", ""),
    ] {
        let path = crate_dir.join(file);
        tokio::fs::write(&path, contents)
            .await
            .map_err(io_error(format!("writing {}", path.display())))?;
    }
    Ok(())
}

/// Builds the allowlist with the toolchain's own cargo and rustc; returns
/// cargo's JSON messages (its standard output).
async fn run_cargo(
    scratch: &Path,
    sysroot: &Path,
    crate_dir: &Path,
    target_dir: &Path,
) -> Result<String, ToolchainError> {
    let mut cargo = Command::new(sysroot.join("bin").join("cargo"));
    cargo
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            TARGET,
            "--message-format=json",
        ])
        .current_dir(crate_dir);
    // The worker's own environment (e.g. `cargo test` running it) must not change how
    // the allowlist is built.
    for (name, _) in std::env::vars_os() {
        if is_build_override(&name.to_string_lossy()) {
            cargo.env_remove(name);
        }
    }
    cargo
        .env("RUSTC", sysroot.join("bin").join("rustc"))
        .env("CARGO_TARGET_DIR", target_dir)
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            remap_flags(scratch).join("\u{1f}"),
        );
    let output = cargo
        .output()
        .await
        .map_err(io_error("running cargo to build the dependency allowlist"))?;
    if !output.status.success() {
        return Err(ToolchainError::DepsBuild {
            log: tail(&String::from_utf8_lossy(&output.stderr), 4000),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Copies the libraries cargo reported (`messages`) into `staged`: rlibs
/// for the target, the proc-macro `.so` files for the host. Returns the
/// exposed packages' rlibs by crate name (`-` read as `_`), relative to `staged`.
pub(super) async fn stage_artifacts(
    messages: &str,
    staging: &Staging<'_>,
) -> Result<BTreeMap<String, String>, ToolchainError> {
    let Staging {
        target_out,
        staged,
        root_crate,
        exposed,
        to_host,
    } = *staging;
    let mut externs = BTreeMap::new();
    for artifact in messages
        .lines()
        .filter_map(|l| serde_json::from_str::<CargoMessage>(l).ok())
    {
        let Some(target) = artifact
            .target
            .filter(|_| artifact.reason == "compiler-artifact")
        else {
            continue;
        };
        if target.name == root_crate.replace('-', "_")
            || target.kind.iter().any(|k| k == "custom-build")
        {
            continue;
        }
        for file in &artifact.filenames {
            // rlibs for the target; the proc-macro `.so` for the host (its own
            // dependencies, syn and quote, are linked into it).
            let subdir = match file.extension().and_then(|e| e.to_str()) {
                Some("rlib") if file.starts_with(target_out) => TARGET_LIBS,
                Some("so") => HOST_LIBS,
                _ => continue,
            };
            let Some(name) = file.file_name() else {
                continue;
            };
            let destination = staged.join(subdir).join(name);
            let source = to_host(file);
            tokio::fs::copy(&source, &destination)
                .await
                .map_err(io_error(format!("copying {}", source.display())))?;
            let package = artifact.package_id.as_deref().map(package_name);
            if subdir == TARGET_LIBS && package.is_some_and(|p| exposed.contains(&p)) {
                externs.insert(
                    target.name.clone(),
                    format!("{subdir}/{}", name.to_string_lossy()),
                );
            }
        }
    }
    Ok(externs)
}

/// The package name in a cargo package id: `registry+URL#name@1.2.3` (cargo
/// 1.77+) or `name 1.2.3 (registry+URL)` (older).
pub(super) fn package_name(package_id: &str) -> &str {
    match package_id.rsplit_once('#') {
        Some((_, fragment)) => fragment.split('@').next().unwrap_or(fragment),
        None => package_id.split(' ').next().unwrap_or(package_id),
    }
}

/// Reads a complete folder (it only ever appears complete, by rename).
pub(super) async fn load(dir: &Path) -> Result<PrebuiltDeps, ToolchainError> {
    let corrupt = |reason: String| ToolchainError::CorruptCache {
        dir: dir.to_path_buf(),
        reason,
    };
    let raw = tokio::fs::read(dir.join(INDEX_FILE))
        .await
        .map_err(|e| corrupt(format!("reading {INDEX_FILE}: {e}")))?;
    let index: Index =
        serde_json::from_slice(&raw).map_err(|e| corrupt(format!("parsing {INDEX_FILE}: {e}")))?;
    for (name, path) in &index.externs {
        if !tokio::fs::try_exists(dir.join(path)).await.unwrap_or(false) {
            return Err(corrupt(format!(
                "the rlib for `{name}` ({path}) is missing"
            )));
        }
    }
    Ok(PrebuiltDeps {
        dir: dir.to_path_buf(),
        externs: index.externs,
    })
}

/// Source paths baked into the rlibs (shown in diagnostics, embedded in panic
/// locations) would otherwise reveal the host's cargo home and scratch folder.
pub(super) fn remap_flags(scratch: &Path) -> Vec<String> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    let mut flags = Vec::new();
    for (from, to) in [
        (cargo_home, "cargo"),
        (Some(scratch.to_path_buf()), "build"),
    ] {
        if let Some(from) = from.as_deref().and_then(Path::to_str) {
            flags.push(format!(
                "--remap-path-prefix={from}={REMAPPED_DEPS_PREFIX}{to}"
            ));
        }
    }
    flags
}

pub(super) fn is_build_override(name: &str) -> bool {
    matches!(
        name,
        "RUSTFLAGS"
            | "CARGO_ENCODED_RUSTFLAGS"
            | "RUSTC_WRAPPER"
            | "RUSTC_WORKSPACE_WRAPPER"
            | "CARGO_INCREMENTAL"
            | "CARGO_MAKEFLAGS"
            | "MAKEFLAGS"
            | "MFLAGS"
    ) || name.starts_with("CARGO_BUILD_")
        || name.starts_with("CARGO_PROFILE_")
        || name.starts_with("CARGO_TARGET_")
}

pub(super) fn tail(text: &str, max: usize) -> String {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

/// The subset of cargo's `--message-format=json` output we read
/// (https://doc.rust-lang.org/cargo/reference/external-tools.html#compiler-artifact).
#[derive(Deserialize)]
struct CargoMessage {
    reason: String,
    package_id: Option<String>,
    target: Option<CargoTarget>,
    #[serde(default)]
    filenames: Vec<PathBuf>,
}

#[derive(Deserialize)]
struct CargoTarget {
    name: String,
    kind: Vec<String>,
}
