//! The compiler worker's settings: flags, each with an environment variable.

use std::path::PathBuf;
use std::time::Duration;

use plat_common::secrets::{PreviousSecretsKeys, SecretsKey};
use plat_common::worker::LoopConfig;

use crate::compile::typescript::packages::{NpmSettings, DEFAULT_NPM_REGISTRY};
use crate::compile::{CompileLimits, DEFAULT_MAX_MODULE_BYTES};

/// Where the compiler keeps its cache unless told otherwise.
pub const DEFAULT_CACHE_DIR: &str = ".plat/cache";

/// How one compiler worker process behaves. Every field has a default that
/// suits one worker on a small machine.
#[derive(Debug, Clone, clap::Args)]
pub struct CompilerConfig {
    /// Compiles run at once by this process (rustc itself uses several threads).
    #[arg(
        id = "compile_concurrency",
        long = "compile-concurrency",
        env = "PLAT_COMPILE_CONCURRENCY",
        default_value_t = 2
    )]
    pub concurrency: usize,
    /// Where the prebuilt dependency allowlist and per-job folders live.
    #[arg(long, env = "PLAT_CACHE_DIR", default_value = DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,
    /// Wall-clock limit of one compile, in seconds.
    #[arg(long, env = "PLAT_COMPILE_TIMEOUT_SECS", default_value_t = 120)]
    pub compile_timeout_secs: u64,
    /// Wall-clock limit of building one set of Rust crates (once per distinct
    /// lockfile; the set is cached), in seconds.
    #[arg(
        long,
        env = "PLAT_DEPENDENCY_BUILD_TIMEOUT_SECS",
        default_value_t = 600
    )]
    pub dependency_build_timeout_secs: u64,
    /// Address-space limit of the compiler process, in MiB (rustc needs ~600).
    #[arg(long, env = "PLAT_COMPILE_MEMORY_MB", default_value_t = 2048)]
    pub compile_memory_mb: u64,
    /// Largest module a build may produce, in bytes (Rust and TypeScript); a
    /// build over it is FAILED with a compileError naming the limit.
    #[arg(long, env = "PLAT_MAX_MODULE_BYTES", default_value_t = DEFAULT_MAX_MODULE_BYTES)]
    pub max_module_bytes: u64,
    /// Opens the sealed sources and lockfiles it builds, and seals the
    /// lockfiles it resolves: the key the API seals them with. Required
    /// (checked at start, so `plat up` can fill it in). Its own id and flag:
    /// `plat up` has the API's `--secrets-key` in the same command.
    #[arg(
        id = "compiler_secrets_key",
        long = "compiler-secrets-key",
        env = "PLAT_SECRETS_KEY",
        hide_env_values = true
    )]
    pub secrets_key: Option<SecretsKey>,
    /// Keys `PLAT_SECRETS_KEY` replaced, comma-separated, during a rotation:
    /// the same as the API's (docs/security.md, "Key rotation").
    #[arg(
        id = "compiler_secrets_previous_keys",
        long = "compiler-secrets-previous-keys",
        env = "PLAT_SECRETS_PREVIOUS_KEYS",
        hide_env_values = true,
        default_value = ""
    )]
    pub secrets_previous_keys: PreviousSecretsKeys,
    /// The operator's dependency policy (TOML): the crate and npm package
    /// allowlists, the advisory database and what a match does, and the
    /// patterns no source may hold. Re-read when it changes; without it the
    /// built-in default applies (docs/dependencies.md).
    #[arg(long, env = "PLAT_DEPENDENCY_POLICY")]
    pub dependency_policy: Option<PathBuf>,
    /// The npm registry TypeScript functions' packages are resolved and
    /// downloaded from (a mirror must serve the same metadata and tarballs:
    /// every tarball is checked against the registry's sha512 integrity).
    #[arg(long, env = "PLAT_NPM_REGISTRY", default_value = DEFAULT_NPM_REGISTRY)]
    pub npm_registry: String,
    /// Seconds a claimed compile job stays ours without a heartbeat.
    #[arg(
        id = "compile_lease_secs",
        long = "compile-lease-secs",
        env = "PLAT_COMPILE_LEASE_SECS",
        default_value_t = 30
    )]
    pub lease_secs: u64,
    /// Fallback poll interval when no notification arrives, in milliseconds.
    #[arg(
        id = "compile_poll_interval_ms",
        long = "compile-poll-ms",
        env = "PLAT_COMPILE_POLL_MS",
        default_value_t = 5000
    )]
    pub poll_interval_ms: u64,
    /// On shutdown, seconds running compiles get to finish before they are
    /// handed back to the queue.
    #[arg(
        id = "compile_shutdown_grace_secs",
        long = "compile-shutdown-grace-secs",
        env = "PLAT_COMPILE_SHUTDOWN_GRACE_SECS",
        default_value_t = 30
    )]
    pub shutdown_grace_secs: u64,
}

impl CompilerConfig {
    pub(crate) fn loop_config(&self) -> LoopConfig {
        LoopConfig {
            concurrency: self.concurrency.max(1),
            lease: Duration::from_secs(self.lease_secs.max(1)),
            poll_interval: Duration::from_millis(self.poll_interval_ms.max(10)),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
        }
    }

    /// Where TypeScript functions' npm packages come from and are kept.
    pub(crate) fn npm_settings(&self) -> NpmSettings {
        NpmSettings {
            registry: self.npm_registry.clone(),
            store: self.cache_dir.join("npm"),
        }
    }

    pub(crate) fn limits(&self) -> CompileLimits {
        CompileLimits {
            timeout: Duration::from_secs(self.compile_timeout_secs.max(1)),
            memory_bytes: self.compile_memory_mb.saturating_mul(1024 * 1024),
            max_module_bytes: self.max_module_bytes,
            dependency_build_timeout: Duration::from_secs(
                self.dependency_build_timeout_secs.max(1),
            ),
        }
    }
}
