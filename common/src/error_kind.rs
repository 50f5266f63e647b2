//! Why an execution failed: the `error.type` of the API.

use serde::{Deserialize, Serialize};

/// The kind of an execution failure. Stored as text in `executions.error_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorKind {
    /// The handler returned an error (`Err` in Rust).
    HandlerError,
    /// The input did not deserialize into the handler's input type.
    InvalidInput,
    /// The handler panicked.
    Panic,
    /// The function called `exit` with a non-zero code.
    Exit,
    /// The function ran past its timeout.
    Timeout,
    /// The function tried to use more memory than its limit.
    OutOfMemory,
    /// The WebAssembly trapped (stack overflow, unreachable, ...).
    Trap,
    /// The function's output was not valid JSON or was too large.
    InvalidOutput,
    /// Every attempt to run the job was lost with its worker.
    WorkerLost,
    /// The module could not be loaded by the executor.
    ModuleError,
    /// Someone cancelled the execution (`POST /executions/{id}/cancel`).
    Cancelled,
    /// The function's environment could not be read (no or another secrets
    /// key on the executor): the operator's to fix.
    EnvironmentError,
}

impl ErrorKind {
    /// The wire and database name, e.g. `HANDLER_ERROR`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::HandlerError => "HANDLER_ERROR",
            ErrorKind::InvalidInput => "INVALID_INPUT",
            ErrorKind::Panic => "PANIC",
            ErrorKind::Exit => "EXIT",
            ErrorKind::Timeout => "TIMEOUT",
            ErrorKind::OutOfMemory => "OUT_OF_MEMORY",
            ErrorKind::Trap => "TRAP",
            ErrorKind::InvalidOutput => "INVALID_OUTPUT",
            ErrorKind::WorkerLost => "WORKER_LOST",
            ErrorKind::ModuleError => "MODULE_ERROR",
            ErrorKind::Cancelled => "CANCELLED",
            ErrorKind::EnvironmentError => "ENVIRONMENT_ERROR",
        }
    }
}

/// Why a run did not produce output: its kind, and a message for the user.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFailure {
    /// The `error.type` of the API.
    pub kind: ErrorKind,
    /// For the user: the handler's or panic's message, or what limit was hit.
    /// Never contains host paths or host backtraces.
    pub message: String,
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_str_matches_the_serde_name() {
        for kind in [
            ErrorKind::HandlerError,
            ErrorKind::OutOfMemory,
            ErrorKind::WorkerLost,
            ErrorKind::Cancelled,
            ErrorKind::EnvironmentError,
        ] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
    }
}
