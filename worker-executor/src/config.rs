//! The executor worker's settings: flags, each with an environment variable.

use std::time::Duration;

use plat_common::worker::LoopConfig;

/// How one executor worker process behaves.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecutorConfig {
    /// Executions run at once by this process; default: one per CPU, at
    /// most 256 (the size of the runtime's instance pool).
    #[arg(
        id = "execute_concurrency",
        long = "execute-concurrency",
        env = "PLAT_EXECUTE_CONCURRENCY"
    )]
    pub concurrency: Option<usize>,
    /// Loaded modules kept in memory (an LRU keyed by function version).
    #[arg(long, env = "PLAT_MODULE_CACHE_SIZE", default_value_t = 256)]
    pub module_cache_size: usize,
    /// Seconds a claimed execution stays ours without a heartbeat.
    #[arg(
        id = "execute_lease_secs",
        long = "execute-lease-secs",
        env = "PLAT_EXECUTE_LEASE_SECS",
        default_value_t = 30
    )]
    pub lease_secs: u64,
    /// Fallback poll interval when no notification arrives, in milliseconds.
    #[arg(
        id = "execute_poll_interval_ms",
        long = "execute-poll-ms",
        env = "PLAT_EXECUTE_POLL_MS",
        default_value_t = 5000
    )]
    pub poll_interval_ms: u64,
    /// On shutdown, seconds running executions get to finish before they
    /// are handed back to the queue.
    #[arg(
        id = "execute_shutdown_grace_secs",
        long = "execute-shutdown-grace-secs",
        env = "PLAT_EXECUTE_SHUTDOWN_GRACE_SECS",
        default_value_t = 30
    )]
    pub shutdown_grace_secs: u64,
}

impl ExecutorConfig {
    pub(crate) fn loop_config(&self) -> LoopConfig {
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        LoopConfig {
            // The runtime's instance pool is sized for this many runs at once.
            concurrency: self
                .concurrency
                .unwrap_or(cpus)
                .clamp(1, crate::runtime::MAX_CONCURRENT_RUNS),
            lease: Duration::from_secs(self.lease_secs.max(1)),
            poll_interval: Duration::from_millis(self.poll_interval_ms.max(10)),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
        }
    }
}
