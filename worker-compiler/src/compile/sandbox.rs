//! Running the compiler inside bubblewrap, under rlimits and a wall-clock timeout.
//!
//! User code runs at compile time too (macros, `include_str!`, const eval, `#[path]`),
//! so rustc sees a filesystem that holds only the toolchain, the prebuilt dependencies
//! and the job folder, with no network and an empty environment. Without this,
//! `include_str!("/etc/passwd")` and `env!("DATABASE_URL")` end up inside the module
//! (docs/architecture.md, "Compile pipeline (Rust)").
//!
//! Two deliberate differences from the recipe in the note:
//! - no `/proc`: `/proc/self/mountinfo` would show the host paths of every bind mount
//!   to `include_str!`. rustc only needs `/proc` to find itself (`$ORIGIN` in its
//!   RUNPATH, `current_exe` for the sysroot), so the toolchain's shared libraries are
//!   symlinked into the loader's default directory (`/usr/lib`, a tmpfs) and rustc is
//!   given `--sysroot` explicitly.
//! - no variables at all, not even `PATH`/`TMPDIR`: `env!` must fail for every name.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tracing::instrument;

use super::CompileLimits;

/// Where the host's Rust sysroot is mounted (read-only).
pub(super) const TOOLCHAIN_DIR: &str = "/opt/rust";
/// Where the prebuilt dependency folder is mounted (read-only).
pub(super) const DEPS_DIR: &str = "/deps";
/// Where the job folder is mounted (writable).
pub(super) const JOB_DIR: &str = "/build";
/// Where a dependency set's vendored sources are mounted (read-only) while it builds.
pub(super) const VENDOR_DIR: &str = "/vendor";
/// Where the host's C compiler driver and linker appear in a set build: build
/// scripts and proc macros are host programs, which rustc links with `cc`.
const HOST_CC: &str = "/usr/bin/cc";
const HOST_LD: &str = "/usr/bin/ld";

/// Largest file the compiler may write (`RLIMIT_FSIZE`); modules are ~100–150 KB.
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
const MAX_OPEN_FILES: u64 = 1024;
/// Size of the `/tmp` tmpfs. tmpfs pages are memory that `RLIMIT_AS` does not
/// count, and unsized they may take half the host's RAM. rustc writes its
/// objects next to its output (in the job folder), so `/tmp` only ever holds
/// what a linker spills (a response file of a few KB): 64 MiB is far more.
pub(super) const TMP_TMPFS_BYTES: u64 = 64 * 1024 * 1024;
/// Size of the `/usr/lib` tmpfs, which holds only symlinks and mount points.
const USR_LIB_TMPFS_BYTES: u64 = 1024 * 1024;
/// How much of the compiler's stderr we keep. A macro can make rustc print millions
/// of diagnostics; the rest is drained and dropped so the worker's memory stays bounded.
const MAX_STDERR_BYTES: u64 = 8 * 1024 * 1024;
/// How much of a set build's standard output (cargo's JSON messages, a few KB
/// per crate) we keep.
const MAX_STDOUT_BYTES: u64 = 32 * 1024 * 1024;

/// The fixed part of the sandbox: what is mounted where.
#[derive(Debug, Clone)]
pub(super) struct Sandbox {
    /// Absolute paths of `prlimit` and `bwrap`, resolved once so the cleared
    /// environment of the child does not matter.
    prlimit: PathBuf,
    bwrap: PathBuf,
    /// Host path of the Rust sysroot, mounted at [`TOOLCHAIN_DIR`].
    toolchain: PathBuf,
    /// Host path of the prebuilt dependencies, mounted at [`DEPS_DIR`].
    deps: PathBuf,
    /// The host's multiarch library folder (libc, libz...: what rustc and its proc
    /// macros link against), mounted read-only at the same path. Debian/Ubuntu layout;
    /// `prepare`'s test compile reports a layout where this is not enough.
    multiarch_lib_dir: Option<PathBuf>,
    /// Whether `/usr/lib64` is mounted (it holds the loader on Debian/Ubuntu).
    has_lib64: bool,
    /// File names of the shared libraries in `<sysroot>/lib` (librustc_driver, libLLVM).
    toolchain_libs: Vec<OsString>,
    /// The host linker a dependency set build needs; `None` where `cc` or
    /// `ld` is not installed (then only sets without build scripts and proc
    /// macros would build, and the build reports the missing linker).
    host_linker: Option<HostLinker>,
}

/// What `cc` needs to link a host program, found once on the worker's `PATH`.
#[derive(Debug, Clone)]
struct HostLinker {
    /// The real file behind `cc` (`cc` → alternatives → `gcc-N`), mounted at [`HOST_CC`].
    cc: PathBuf,
    /// The real file behind `ld`, mounted at [`HOST_LD`].
    ld: PathBuf,
    /// gcc's own folders (`/usr/lib/gcc`: collect2, crtbegin.o, libgcc;
    /// `/usr/libexec/gcc` where the layout has it), mounted read-only at the same paths.
    gcc_dirs: Vec<PathBuf>,
}

impl HostLinker {
    fn find() -> Option<Self> {
        let cc = find_program("cc")?.canonicalize().ok()?;
        let ld = find_program("ld")?.canonicalize().ok()?;
        let gcc_dirs = ["/usr/lib/gcc", "/usr/libexec/gcc"]
            .into_iter()
            .map(PathBuf::from)
            .filter(|dir| dir.is_dir())
            .collect();
        Some(Self { cc, ld, gcc_dirs })
    }
}

/// What a dependency set build adds to the sandbox (see [`Sandbox::build_set`]).
#[derive(Debug)]
pub(super) struct SetBuild<'a> {
    /// The set's vendored sources on the host, mounted read-only at [`VENDOR_DIR`].
    pub vendor: &'a Path,
    /// The variables cargo runs with (the sandbox clears everything else).
    pub env: &'a [(&'a str, String)],
    /// The wall-clock limit of the build, in place of `limits.timeout`.
    pub timeout: std::time::Duration,
}

/// How a sandboxed process ended.
#[derive(Debug)]
pub(super) struct Finished {
    pub status: ExitStatus,
    /// Up to [`MAX_STDOUT_BYTES`] of the process's stdout (set builds only; empty otherwise).
    pub stdout: Vec<u8>,
    /// Up to [`MAX_STDERR_BYTES`] of the process's stderr.
    pub stderr: Vec<u8>,
}

/// Why the sandbox did not give a compiler's exit.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// `prlimit` or `bwrap` could not be started.
    #[error("could not start the sandbox (prlimit + bwrap): {0}")]
    Spawn(#[source] io::Error),
    /// Waiting for the process failed.
    #[error("lost track of the sandboxed process: {0}")]
    Wait(#[source] io::Error),
    /// The wall-clock limit passed.
    #[error("the sandboxed process was killed after the {0:?} wall-clock limit")]
    TimedOut(std::time::Duration),
}

impl Sandbox {
    /// Describes the sandbox for a toolchain at `toolchain` (a sysroot) and prebuilt
    /// dependencies at `deps`, run with the given `prlimit` and `bwrap` binaries.
    /// Reads the host's library layout once.
    pub(super) fn new(
        prlimit: PathBuf,
        bwrap: PathBuf,
        toolchain: &Path,
        deps: &Path,
    ) -> io::Result<Self> {
        let multiarch = PathBuf::from(format!("/usr/lib/{}-linux-gnu", std::env::consts::ARCH));
        let multiarch_lib_dir = multiarch.is_dir().then_some(multiarch);
        // Only a real directory: where /usr/lib64 is a symlink to /usr/lib, binding it
        // would expose all of /usr/lib.
        let has_lib64 = std::fs::symlink_metadata("/usr/lib64").is_ok_and(|m| m.is_dir());

        let mut toolchain_libs = Vec::new();
        for entry in std::fs::read_dir(toolchain.join("lib"))? {
            let entry = entry?;
            let name = entry.file_name();
            // `is_file` follows symlinks, which some toolchain layouts use here.
            if entry.path().is_file() && name.to_string_lossy().contains(".so") {
                toolchain_libs.push(name);
            }
        }
        Ok(Self {
            prlimit,
            bwrap,
            toolchain: toolchain.to_path_buf(),
            deps: deps.to_path_buf(),
            multiarch_lib_dir,
            has_lib64,
            toolchain_libs,
            host_linker: HostLinker::find(),
        })
    }

    /// Runs `program` (a path inside the sandbox) with `args` in `workdir` (inside the
    /// sandbox), with `job_dir` mounted writable at [`JOB_DIR`] and the prebuilt
    /// dependencies at [`DEPS_DIR`]. When the wall-clock
    /// limit expires the process tree is killed: bwrap is our direct child (prlimit
    /// execs it), `--die-with-parent` takes its init down with it, and the pid
    /// namespace ends with its init.
    #[instrument(skip_all, fields(program = %program))]
    pub(super) async fn run(
        &self,
        job_dir: &Path,
        workdir: &str,
        program: &str,
        args: &[String],
        limits: &CompileLimits,
    ) -> Result<Finished, SandboxError> {
        self.run_with_deps(&self.deps, job_dir, workdir, program, args, limits)
            .await
    }

    /// [`run`](Self::run) with another dependency folder (a built dependency
    /// set) mounted at [`DEPS_DIR`] instead of the prebuilt one.
    pub(super) async fn run_with_deps(
        &self,
        deps: &Path,
        job_dir: &Path,
        workdir: &str,
        program: &str,
        args: &[String],
        limits: &CompileLimits,
    ) -> Result<Finished, SandboxError> {
        let mut command = self.command(Some(deps), job_dir, workdir, limits);
        command.arg(program).args(args);
        finish(command, false, limits.timeout).await
    }

    /// Runs cargo (`program`, inside the sandbox) to build a dependency set:
    /// the user-compile sandbox (no network, no host files, an unprivileged
    /// uid, the rlimits), plus what build scripts and proc macros need and
    /// nothing else: the vendored sources read-only, the host linker
    /// read-only, a private `/proc` (rustc's linker wrapper finds itself
    /// through `/proc/self/exe`) and the given variables. No prebuilt
    /// dependencies are mounted. Keeps its standard output (cargo's JSON
    /// messages). Limited by `set.timeout` rather than `limits.timeout`.
    #[instrument(skip_all, fields(program = %program))]
    pub(super) async fn build_set(
        &self,
        set: &SetBuild<'_>,
        job_dir: &Path,
        workdir: &str,
        program: &str,
        args: &[String],
        limits: &CompileLimits,
    ) -> Result<Finished, SandboxError> {
        let timeout = set.timeout;
        let limits = CompileLimits {
            timeout,
            ..limits.clone()
        };
        let mut command = self.command(None, job_dir, workdir, &limits);
        command.args(["--proc", "/proc"]);
        command.arg("--ro-bind").arg(set.vendor).arg(VENDOR_DIR);
        if let Some(linker) = &self.host_linker {
            for dir in &linker.gcc_dirs {
                command.arg("--ro-bind").arg(dir).arg(dir);
            }
            command.arg("--ro-bind").arg(&linker.cc).arg(HOST_CC);
            command.arg("--ro-bind").arg(&linker.ld).arg(HOST_LD);
        }
        for (name, value) in set.env {
            command.arg("--setenv").arg(name).arg(value);
        }
        command.arg(program).args(args);
        finish(command, true, timeout).await
    }

    fn command(
        &self,
        deps: Option<&Path>,
        job_dir: &Path,
        workdir: &str,
        limits: &CompileLimits,
    ) -> Command {
        // RLIMIT_CPU is only a backstop for the wall clock; rustc codegens on several
        // threads, so its CPU time can exceed the elapsed time.
        let cpu_seconds = limits.timeout.as_secs().max(1).saturating_mul(2);
        let mut command = Command::new(&self.prlimit);
        command
            .arg(format!("--as={}", limits.memory_bytes))
            .arg(format!("--cpu={cpu_seconds}"))
            .arg(format!("--fsize={MAX_FILE_BYTES}"))
            .arg(format!("--nofile={MAX_OPEN_FILES}"))
            .arg("--")
            .arg(&self.bwrap)
            // As real root, bwrap keeps every capability unless the sandbox gets its
            // own user namespace with an unprivileged uid and drops them.
            .args([
                "--unshare-all",
                "--unshare-user",
                "--uid",
                "65534",
                "--gid",
                "65534",
            ])
            .args([
                "--cap-drop",
                "ALL",
                "--die-with-parent",
                "--new-session",
                "--clearenv",
            ])
            // /usr/lib is a tmpfs holding only the host's multiarch library folder and
            // links to the toolchain's libraries (see the module docs for why).
            .arg("--size")
            .arg(USR_LIB_TMPFS_BYTES.to_string())
            .args(["--tmpfs", "/usr/lib"]);
        if let Some(dir) = &self.multiarch_lib_dir {
            command.arg("--ro-bind").arg(dir).arg(dir);
        }
        if self.has_lib64 {
            command.args([
                "--ro-bind",
                "/usr/lib64",
                "/usr/lib64",
                "--symlink",
                "usr/lib64",
                "/lib64",
            ]);
        } else {
            command.args(["--symlink", "usr/lib", "/lib64"]);
        }
        command.args(["--symlink", "usr/lib", "/lib"]);
        for lib in &self.toolchain_libs {
            let mut target = OsString::from(format!("{TOOLCHAIN_DIR}/lib/"));
            target.push(lib);
            let mut link = OsString::from("/usr/lib/");
            link.push(lib);
            command.arg("--symlink").arg(target).arg(link);
        }
        command
            .args(["--dev", "/dev", "--size"])
            .arg(TMP_TMPFS_BYTES.to_string())
            .args(["--tmpfs", "/tmp"])
            .arg("--ro-bind")
            .arg(&self.toolchain)
            .arg(TOOLCHAIN_DIR);
        if let Some(deps) = deps {
            command.arg("--ro-bind").arg(deps).arg(DEPS_DIR);
        }
        command
            .arg("--bind")
            .arg(job_dir)
            .arg(JOB_DIR)
            .args(["--chdir", workdir]);
        command
    }
}

/// Starts `command` (a full prlimit + bwrap command line) with an empty
/// environment and waits for it, at most `timeout`.
async fn finish(
    mut command: Command,
    keep_stdout: bool,
    timeout: std::time::Duration,
) -> Result<Finished, SandboxError> {
    command
        .env_clear()
        .stdin(Stdio::null())
        .stdout(if keep_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(SandboxError::Spawn)?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let finished = tokio::time::timeout(timeout, async {
        let (status, stdout, stderr) = tokio::join!(
            child.wait(),
            read_capped(stdout, MAX_STDOUT_BYTES),
            read_capped(stderr, MAX_STDERR_BYTES)
        );
        Ok::<_, io::Error>(Finished {
            status: status?,
            stdout: stdout?,
            stderr: stderr?,
        })
    })
    .await;
    match finished {
        Ok(result) => result.map_err(SandboxError::Wait),
        Err(_elapsed) => {
            // Kill and reap now rather than leaving it to kill_on_drop, so the
            // tree is gone before the caller reports the timeout.
            let _ = child.start_kill();
            let _ = child.wait().await;
            Err(SandboxError::TimedOut(timeout))
        }
    }
}

/// Reads up to `cap` bytes, then drains the rest so the writer never blocks on a full pipe.
async fn read_capped(stream: Option<impl AsyncRead + Unpin>, cap: u64) -> io::Result<Vec<u8>> {
    let Some(mut stream) = stream else {
        return Ok(Vec::new());
    };
    let mut kept = Vec::new();
    (&mut stream).take(cap).read_to_end(&mut kept).await?;
    tokio::io::copy(&mut stream, &mut tokio::io::sink()).await?;
    Ok(kept)
}

/// Looks `name` up in the worker's `PATH`, like a shell would.
pub(super) fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sandbox rustc runs in, with the host's `dd` mounted into it: user
    /// code cannot write files at compile time, so this stands in for anything
    /// in the sandbox that would fill `/tmp`.
    async fn sandboxed_dd(args: &[&str]) -> Finished {
        let sysroot = std::process::Command::new("rustc")
            .args(["--print", "sysroot"])
            .output()
            .expect("rustc runs");
        let sysroot = PathBuf::from(String::from_utf8(sysroot.stdout).unwrap().trim());
        let deps = tempfile::tempdir().unwrap();
        let job = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::new(
            find_program("prlimit").expect("prlimit"),
            find_program("bwrap").expect("bwrap"),
            &sysroot,
            deps.path(),
        )
        .unwrap();
        let dd = find_program("dd").expect("dd");
        let mut command = sandbox.command(
            Some(deps.path()),
            job.path(),
            JOB_DIR,
            &CompileLimits::default(),
        );
        command
            .arg("--ro-bind")
            .arg(&dd)
            .arg("/dd")
            .arg("/dd")
            .args(args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let output = command.output().await.expect("the sandbox starts");
        Finished {
            status: output.status,
            stdout: output.stdout,
            stderr: output.stderr,
        }
    }

    #[tokio::test]
    async fn writing_more_than_the_tmp_tmpfs_holds_fails_with_no_space_left() {
        let mib = TMP_TMPFS_BYTES / (1024 * 1024);
        let fits = sandboxed_dd(&[
            "if=/dev/zero",
            "of=/tmp/fits",
            "bs=1M",
            &format!("count={}", mib / 2),
        ])
        .await;
        let too_much = sandboxed_dd(&[
            "if=/dev/zero",
            "of=/tmp/fill",
            "bs=1M",
            &format!("count={}", mib * 2),
        ])
        .await;

        assert!(
            fits.status.success(),
            "{}",
            String::from_utf8_lossy(&fits.stderr)
        );
        assert!(!too_much.status.success());
        let stderr = String::from_utf8_lossy(&too_much.stderr);
        assert!(stderr.contains("No space left on device"), "{stderr}");
    }
}
