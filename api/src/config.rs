//! The API's settings: flags, each with an environment variable.

use std::net::SocketAddr;

/// How the API process behaves. Limits protect the database and the workers
/// from oversized requests; every one is configurable by the operator.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiConfig {
    /// Address to listen on.
    #[arg(long, env = "PLAT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Largest function source accepted, in bytes.
    #[arg(long, env = "PLAT_MAX_SOURCE_BYTES", default_value_t = 256 * 1024)]
    pub max_source_bytes: usize,
    /// Largest execution input accepted, in bytes.
    #[arg(long, env = "PLAT_MAX_INPUT_BYTES", default_value_t = 1024 * 1024)]
    pub max_input_bytes: usize,
    /// Largest body of `POST /functions/{function}/executions/batch`, in bytes.
    #[arg(long, env = "PLAT_MAX_BATCH_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_batch_bytes: usize,
    /// Highest `executionConfig.timeoutMs` a function may ask for.
    #[arg(long, env = "PLAT_MAX_TIMEOUT_MS", default_value_t = 300_000)]
    pub max_timeout_ms: u32,
    /// Highest `executionConfig.memoryLimitMb` a function may ask for.
    #[arg(long, env = "PLAT_MAX_MEMORY_MB", default_value_t = 1024)]
    pub max_memory_mb: u32,
    /// Longest `?wait=` an execute call may block, in seconds.
    #[arg(long, env = "PLAT_MAX_WAIT_SECS", default_value_t = 300)]
    pub max_wait_secs: u32,
    /// Database connections held by this API process.
    #[arg(long, env = "PLAT_DB_MAX_CONNECTIONS", default_value_t = 20)]
    pub db_max_connections: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_source_bytes: 256 * 1024,
            max_input_bytes: 1024 * 1024,
            max_batch_bytes: 16 * 1024 * 1024,
            max_timeout_ms: 300_000,
            max_memory_mb: 1024,
            max_wait_secs: 300,
            db_max_connections: 20,
        }
    }
}
