//! How `plat` ends: its exit codes, and the error it prints last.

use serde_json::{json, Value};

use crate::client::ApiError;

/// Everything went as asked.
pub const EXIT_OK: u8 = 0;
/// The command failed: a refused request (the server's detail is printed),
/// an unreachable server, a bad manifest or file.
pub const EXIT_ERROR: u8 = 1;
/// The command line itself is wrong (clap's own code).
pub const EXIT_USAGE: u8 = 2;
/// The function's build or run failed: a compile error (`deploy`, `test`)
/// or an execution that did not succeed (`invoke`, `test`). What failed has
/// been printed already.
pub const EXIT_FUNCTION_FAILED: u8 = 3;

/// The function's own build or run failed (as opposed to the command).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FunctionFailed(pub String);

pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<FunctionFailed>().is_some() {
        EXIT_FUNCTION_FAILED
    } else {
        EXIT_ERROR
    }
}

/// The error as `--output json` prints it on stdout, or `None` when the
/// command printed its own JSON result already (a failed run's execution).
pub fn error_json(error: &anyhow::Error) -> Option<Value> {
    if error.downcast_ref::<FunctionFailed>().is_some() {
        return None;
    }
    let mut body = json!({ "message": format!("{error:#}") });
    if let Some(ApiError::Problem {
        status,
        kind,
        detail,
    }) = error.downcast_ref::<ApiError>()
    {
        body["status"] = json!(status.as_u16());
        body["type"] = json!(kind);
        body["detail"] = json!(detail);
    }
    Some(json!({ "error": body }))
}
