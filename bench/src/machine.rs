//! What the numbers were measured on, so two result files can be compared
//! (or not).

use std::path::Path;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub memory_total_kib: Option<u64>,
    /// `uname -r`.
    pub kernel: Option<String>,
    /// `postgres --version` of the server the first profile ran.
    pub postgres_version: Option<String>,
}

impl Machine {
    pub fn probe() -> Self {
        Self {
            cpus: cpus(),
            memory_total_kib: memory_total_kib(),
            kernel: command_output(Path::new("uname"), &["-r"]),
            postgres_version: None,
        }
    }
}

/// The cores this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `MemTotal` from /proc/meminfo (in kB, which the kernel means as KiB).
fn memory_total_kib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The workspace's `git rev-parse --short HEAD`, or "unknown" outside a
/// checkout (or without git).
pub fn git_revision() -> String {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let workspace = workspace.to_string_lossy();
    command_output(
        Path::new("git"),
        &["-C", &workspace, "rev-parse", "--short", "HEAD"],
    )
    .filter(|revision| !revision.is_empty())
    .unwrap_or_else(|| "unknown".to_owned())
}

/// A command's trimmed stdout, if it ran and succeeded.
pub fn command_output(program: &Path, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
