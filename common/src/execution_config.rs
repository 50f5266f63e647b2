//! The limits and environment a function version runs with.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Stored per function version (`function_versions.execution_config`), always
/// fully populated: the API fills defaults before storing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionConfig {
    /// Wall-clock limit of one run.
    pub timeout_ms: u32,
    /// Cap on the module's linear memory.
    pub memory_limit_mb: u32,
    /// The only environment variables the function sees.
    #[serde(default)]
    pub environment_variables: BTreeMap<String, String>,
    /// Most runs of the function RUNNING at once across all executors
    /// (`None`: no limit). Enforced by the queue: see
    /// `migrations/20261206000001_fair_queue_and_quotas.sql`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 10_000,
            memory_limit_mb: 128,
            environment_variables: BTreeMap::new(),
            max_concurrency: None,
        }
    }
}
