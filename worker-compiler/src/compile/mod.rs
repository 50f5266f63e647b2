//! Compiling user functions to WebAssembly (WASI preview 1 commands).
//!
//! [`RustToolchain`] compiles a user's Rust `handler.rs` by calling `rustc` directly,
//! inside a bubblewrap sandbox, against a read-only set of prebuilt dependencies
//! (serde, serde_json). The recipe and its measurements: /work/shared/notes/rust-to-wasm.md.

mod diagnostics;
mod prebuilt;
pub mod rust;
mod sandbox;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use rust::{RustToolchain, ToolchainError};

/// Why a compile did not produce a module.
#[derive(Debug, thiserror::Error)]
pub enum CompileFailure {
    /// The user's code is at fault: the message is shown to the user as `compileError`
    /// (rustc diagnostics with line:column in THEIR file, named `handler.rs`; never host paths/content).
    #[error("{0}")]
    User(String),
    /// Our infrastructure failed (sandbox could not start, I/O error...): the job will be retried.
    #[error("{0}")]
    Infra(String),
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
}

impl Default for CompileLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(120),
            memory_bytes: 2 * 1024 * 1024 * 1024,
        }
    }
}
