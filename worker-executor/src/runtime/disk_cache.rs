//! Compiled native code kept on disk, so each module (and each JavaScript
//! engine build) is compiled by Cranelift once per machine, not once per
//! process start.
//!
//! One file per module: `<dir>/<sha256 of the wasm>-<engine>.cwasm`, where
//! `<engine>` hashes [`Engine::precompile_compatibility_hash`] (wasmtime's
//! version, the target CPU's features, our `Config`), so an upgrade or a
//! config change looks up other names and never finds code it cannot use.
//! A file is [`MAGIC`], then the sha256 of its name and payload, then what
//! [`Module::serialize`] returned.
//!
//! Loading native code is the one `unsafe` thing the executor does; why it is
//! sound is argued on [`deserialize`]. Everything here is best effort: a
//! folder that cannot be trusted is not used, and a file that cannot be
//! read, verified or written costs a compile and a warning, never a run.

use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest as _, Sha256};
use wasmtime::{Engine, Module};

/// The start of every cache file; a new layout gets a new magic.
const MAGIC: &[u8; 16] = b"plat-cwasm-v1\0\0\0";
const CHECKSUM_LEN: usize = 32;
const HEADER_LEN: usize = MAGIC.len() + CHECKSUM_LEN;

/// An open, checked cache folder.
pub(crate) struct DiskCache {
    /// The folder, opened once and checked once: every file is opened,
    /// created and renamed relative to this descriptor, so whatever later
    /// happens to `path` (renamed, replaced by a symlink) cannot make us
    /// read from another folder.
    dir: File,
    /// For log lines only.
    path: PathBuf,
    /// Our effective uid: the owner of the folder and of every file in it.
    uid: u32,
    /// Hex digest of the engine's compatibility hash, part of every name.
    engine: String,
}

/// Where a module's native code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Read from a verified cache file.
    Disk,
    /// Compiled by Cranelift just now.
    Compiled,
}

impl DiskCache {
    /// Creates `path` (mode 0700) unless it exists, and opens it. Fails when
    /// the folder is not ours or others may write to it: anything in it
    /// could then have been put there by someone else.
    pub(crate) fn open(path: &Path, engine: &Engine) -> anyhow::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => {
                return Err(error).with_context(|| format!("creating {}", path.display()))
            }
        }
        let dir = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map(File::from)
        .with_context(|| format!("opening {}", path.display()))?;
        // Checked on the descriptor we keep, not on the path: no window
        // between the check and the use.
        let metadata = dir.metadata()?;
        let uid = rustix::process::geteuid().as_raw();
        check_trusted(metadata.mode(), metadata.uid(), uid)
            .with_context(|| format!("{} cannot be trusted", path.display()))?;
        Ok(Self {
            dir,
            path: path.to_owned(),
            uid,
            engine: engine_digest(engine),
        })
    }

    /// The module for `wasm`: from its cache file when one is there and
    /// verifies, else compiled and written for the next process. Errors are
    /// compile errors only; a cache problem is logged and worked around.
    pub(crate) fn module(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> wasmtime::Result<(Module, Origin)> {
        let name = self.file_name(wasm);
        match self.read(&name) {
            Ok(Some(code)) => match deserialize(engine, &code) {
                Ok(module) => return Ok((module, Origin::Disk)),
                // Verified, so written by us, yet refused: e.g. a file that
                // predates a wasmtime upgrade keeping the same hash.
                Err(error) => self.warn(&name, "wasmtime refused a cache file", &error.into()),
            },
            Ok(None) => {}
            Err(error) => self.warn(&name, "could not use a cache file", &error),
        }
        let module = Module::from_binary(engine, wasm)?;
        if let Err(error) = self.write(&name, &module) {
            self.warn(&name, "could not write a cache file", &error);
        }
        Ok((module, Origin::Compiled))
    }

    fn file_name(&self, wasm: &[u8]) -> String {
        format!(
            "{}-{}.cwasm",
            hex::encode(Sha256::digest(wasm)),
            self.engine
        )
    }

    /// The verified contents of `name`, or `None` when there is no such file.
    fn read(&self, name: &str) -> anyhow::Result<Option<Verified>> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut file = match rustix::fs::openat(&self.dir, name, flags, Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(Errno::NOENT) => return Ok(None),
            Err(error) => return Err(io::Error::from(error).into()),
        };
        let metadata = file.metadata()?;
        anyhow::ensure!(
            metadata.file_type().is_file() && metadata.uid() == self.uid,
            "not a regular file owned by us"
        );
        let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
        file.read_to_end(&mut bytes)?;
        Verified::check(name, bytes).map(Some)
    }

    /// Writes `module`'s code to `name` atomically: a temporary file in the
    /// folder, renamed over `name`, so a reader sees a whole file or none.
    /// Concurrent writers of one name (two processes loading the same module)
    /// each rename a complete file; the last one wins, and both are the same.
    /// No fsync: a file torn by a crash fails its checksum and is rewritten.
    fn write(&self, name: &str, module: &Module) -> anyhow::Result<()> {
        let payload = module.serialize()?;
        let checksum = checksum(name, &payload);
        let temp = format!(".{name}.{:016x}.tmp", rand::random::<u64>());
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut file = rustix::fs::openat(&self.dir, &temp, flags, Mode::RUSR | Mode::WUSR)
            .map(File::from)
            .map_err(io::Error::from)?;
        let written = file
            .write_all(MAGIC)
            .and_then(|()| file.write_all(&checksum))
            .and_then(|()| file.write_all(&payload));
        drop(file);
        let renamed = written.and_then(|()| {
            rustix::fs::renameat(&self.dir, &temp, &self.dir, name).map_err(io::Error::from)
        });
        if renamed.is_err() {
            // Best effort: a leftover temporary file is never read.
            let _ = rustix::fs::unlinkat(&self.dir, &temp, AtFlags::empty());
        }
        Ok(renamed?)
    }

    fn warn(&self, name: &str, what: &str, error: &anyhow::Error) {
        tracing::warn!(
            file = %self.path.join(name).display(),
            error = %format_args!("{error:#}"),
            "{what}; compiling the module instead"
        );
    }
}

/// Why a folder is not used: it must be ours, and only we may write to it.
fn check_trusted(mode: u32, owner: u32, uid: u32) -> anyhow::Result<()> {
    anyhow::ensure!(
        owner == uid,
        "it is owned by uid {owner}, not by us (uid {uid})"
    );
    anyhow::ensure!(
        mode & 0o022 == 0,
        "group or others may write to it (mode {:o}); chmod 700 it",
        mode & 0o7777
    );
    Ok(())
}

/// A cache file's contents whose checksum matched: the only input
/// [`deserialize`] takes.
struct Verified(Vec<u8>);

impl Verified {
    fn check(name: &str, bytes: Vec<u8>) -> anyhow::Result<Self> {
        anyhow::ensure!(
            bytes.len() >= HEADER_LEN && bytes.starts_with(MAGIC),
            "not a Plat cache file, or cut short"
        );
        let (expected, payload) = bytes[MAGIC.len()..].split_at(CHECKSUM_LEN);
        anyhow::ensure!(
            checksum(name, payload) == expected,
            "checksum mismatch (a torn or damaged file)"
        );
        Ok(Self(bytes))
    }

    fn payload(&self) -> &[u8] {
        &self.0[HEADER_LEN..]
    }
}

/// Covers the name too, so a file copied or renamed to another module's name
/// does not verify.
fn checksum(name: &str, payload: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(payload);
    hasher.finalize().into()
}

/// Loads native code from a verified cache file: the one `unsafe` call in
/// the executor, hence the only item allowed to make one.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, code: &Verified) -> wasmtime::Result<Module> {
    // SAFETY: `Module::deserialize` trusts its input to be the unmodified
    // output of `Module::serialize` (arbitrary bytes could be arbitrary native
    // code). Only such output, written by this executor or another process
    // running as our user, reaches this call:
    // - the folder was opened once and checked on that descriptor
    //   (`check_trusted`): owned by our uid and not writable by group or
    //   others (we create it 0700), so only our uid (or root) can add or change
    //   files in it; every file is opened relative to that descriptor, without
    //   following symlinks, and must itself be a regular file owned by us;
    // - file names are derived from the key (sha256 of the wasm, engine hash),
    //   never taken from outside input;
    // - a `Verified` only exists once the file's sha256 (over its name and
    //   payload) matched, so a torn, truncated, damaged or renamed file is
    //   recompiled, not loaded.
    // Code from another wasmtime version or engine config has another name,
    // and wasmtime itself rejects such input with an error rather than loading
    // it (see the `Module::deserialize` docs).
    unsafe { Module::deserialize(engine, code.payload()) }
}

/// The engine's compatibility hash, as hex: `Hash` only feeds a `Hasher`,
/// so sha256 is made one (stable across processes, unlike `DefaultHasher`'s
/// unspecified algorithm).
fn engine_digest(engine: &Engine) -> String {
    struct Sha256Hasher(Sha256);
    impl Hasher for Sha256Hasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            let digest = self.0.clone().finalize();
            u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
        }
    }
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    // 64 bits tell apart the few configurations one machine ever runs.
    hex::encode(&hasher.0.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_of_ours_that_only_we_may_write_is_trusted() {
        assert!(check_trusted(0o40700, 1000, 1000).is_ok());
        assert!(
            check_trusted(0o40755, 1000, 1000).is_ok(),
            "others may read"
        );
    }

    #[test]
    fn a_folder_others_may_write_or_of_another_owner_is_not_trusted() {
        assert!(check_trusted(0o40770, 1000, 1000).is_err(), "group");
        assert!(check_trusted(0o40707, 1000, 1000).is_err(), "others");
        assert!(
            check_trusted(0o41777, 1000, 1000).is_err(),
            "sticky /tmp-like"
        );
        assert!(check_trusted(0o40700, 0, 1000).is_err(), "root's");
        assert!(
            check_trusted(0o40700, 1001, 1000).is_err(),
            "another user's"
        );
    }

    #[test]
    fn a_file_verifies_only_under_its_own_name_and_whole() {
        let payload = b"native code".as_slice();
        let file = [MAGIC.as_slice(), &checksum("a.cwasm", payload), payload].concat();

        assert!(Verified::check("a.cwasm", file.clone()).is_ok());
        assert!(Verified::check("b.cwasm", file.clone()).is_err(), "renamed");
        assert!(
            Verified::check("a.cwasm", file[..file.len() - 1].to_vec()).is_err(),
            "cut short"
        );
        assert!(
            Verified::check("a.cwasm", file[..10].to_vec()).is_err(),
            "torn header"
        );
        let mut flipped = file;
        *flipped.last_mut().unwrap() ^= 1;
        assert!(Verified::check("a.cwasm", flipped).is_err(), "damaged");
    }
}
