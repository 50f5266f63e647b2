//! `LISTEN`/`NOTIFY` channel names. A notification is only ever a hint that
//! something changed; the listener re-reads the tables (payloads are
//! advisory), so a lost notification costs latency, never correctness.

/// A compile job became claimable.
pub const COMPILE_JOBS: &str = "plat_compile_jobs";
/// An execution job became claimable.
pub const EXECUTION_JOBS: &str = "plat_execution_jobs";
/// An execution reached a terminal state; the payload is its id.
pub const EXECUTION_FINISHED: &str = "plat_execution_finished";
/// A function version finished building (READY or FAILED); the payload is
/// the function id.
pub const FUNCTION_VERSION_BUILT: &str = "plat_function_version_built";
