//! The executor worker's settings: flags, each with an environment variable.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::{OsStringValueParser, TypedValueParser as _};

use plat_common::secrets::{PreviousSecretsKeys, SecretsKey};
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
    /// The most executions claimed ahead, beyond those running, so the next
    /// one is already here when a run ends and claims come in large,
    /// cheap batches. The worker claims ahead only what its run threads get
    /// through in about 5 ms at the recent runs' average duration (none
    /// for runs of seconds), and only while a run thread is idle, so it
    /// does not hoard jobs other workers could start.
    #[arg(
        long = "execute-prefetch",
        env = "PLAT_EXECUTE_PREFETCH",
        default_value_t = 128
    )]
    pub prefetch: usize,
    /// Loaded modules kept in memory (an LRU keyed by function version).
    #[arg(long, env = "PLAT_MODULE_CACHE_SIZE", default_value_t = 256)]
    pub module_cache_size: usize,
    /// Folder keeping compiled native code between process starts, so each
    /// module (and JavaScript engine build) is compiled once per machine.
    /// Created with mode 0700; a folder not ours or writable by others is not
    /// used. Empty: no disk cache.
    #[arg(
        long,
        env = "PLAT_MODULE_CACHE_DIR",
        default_value = ExecutorConfig::DEFAULT_MODULE_CACHE_DIR,
        // The default `PathBuf` parser refuses an empty value, which here
        // means "off".
        value_parser = OsStringValueParser::new().map(PathBuf::from)
    )]
    pub module_cache_dir: PathBuf,
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
    /// Decrypts the environments functions reference (`PLAT_SECRETS_KEY`,
    /// read by the binary, as the API's own flag of the same name). Without
    /// it, runs of such functions fail with ENVIRONMENT_ERROR.
    #[arg(skip)]
    pub secrets_key: Option<SecretsKey>,
    /// Keys `PLAT_SECRETS_KEY` replaced, during a rotation
    /// (`PLAT_SECRETS_PREVIOUS_KEYS`, read by the binary as `secrets_key`).
    #[arg(skip)]
    pub secrets_previous_keys: PreviousSecretsKeys,
}

impl ExecutorConfig {
    /// Where compiled native code is kept unless told otherwise.
    pub const DEFAULT_MODULE_CACHE_DIR: &str = ".plat/module-cache";

    /// The disk cache's folder, `None` when it is turned off.
    pub(crate) fn module_cache_dir(&self) -> Option<&Path> {
        Some(self.module_cache_dir.as_path()).filter(|dir| !dir.as_os_str().is_empty())
    }

    /// Run threads: executions running at once.
    pub(crate) fn runs_at_once(&self) -> usize {
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        // The runtime's instance pool is sized for this many runs at once.
        self.concurrency
            .unwrap_or(cpus)
            .clamp(1, crate::runtime::MAX_CONCURRENT_RUNS)
    }

    pub(crate) fn loop_config(&self) -> LoopConfig {
        LoopConfig {
            // Jobs held at once: running, waiting for a run thread, or
            // having their result written.
            concurrency: self.runs_at_once() + self.prefetch,
            lease: Duration::from_secs(self.lease_secs.max(1)),
            poll_interval: Duration::from_millis(self.poll_interval_ms.max(10)),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        config: ExecutorConfig,
    }

    fn module_cache_dir(args: &[&str]) -> Option<PathBuf> {
        let cli = Cli::try_parse_from([&["worker-executor"], args].concat()).expect("parses");
        cli.config.module_cache_dir().map(Path::to_path_buf)
    }

    #[test]
    fn the_module_cache_folder_defaults_to_plat_module_cache_and_empty_turns_it_off() {
        let default = module_cache_dir(&[]);
        let chosen = module_cache_dir(&["--module-cache-dir", "/var/cache/plat"]);
        let off = module_cache_dir(&["--module-cache-dir", ""]);

        assert_eq!(default, Some(PathBuf::from(".plat/module-cache")));
        assert_eq!(chosen, Some(PathBuf::from("/var/cache/plat")));
        assert_eq!(off, None);
    }
}
