//! What the Plat components share: the database schema and its migrations, the
//! queue SQL, job and execution types, telemetry and shutdown handling.
#![deny(missing_docs)]

pub mod db;
pub mod dependencies;
pub mod error_kind;
pub mod execution_config;
pub mod function_name;
pub mod js_module;
pub mod json_depth;
pub mod language;
pub mod metrics;
pub mod notify;
pub mod outbound;
pub mod queue;
pub mod roles;
pub mod secrets;
pub mod shutdown;
pub mod sse;
pub mod status;
pub mod telemetry;
pub mod trigger;
pub mod worker;

pub use error_kind::{ErrorKind, RunFailure};
pub use execution_config::{ExecutionConfig, RetryPolicy};
pub use language::Language;
pub use status::{ExecutionStatus, VersionStatus};
pub use trigger::Trigger;
