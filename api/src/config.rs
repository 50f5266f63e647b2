//! The API's settings: flags, each with an environment variable.

use std::net::SocketAddr;

use plat_common::secrets::{PreviousSecretsKeys, Secret, SecretsKey};

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
    /// When the database has no users yet, create an admin whose API key is
    /// this value (at least 32 characters). Ignored once any user exists.
    #[arg(long, env = "PLAT_BOOTSTRAP_ADMIN_KEY", hide_env_values = true)]
    pub bootstrap_admin_key: Option<Secret>,
    /// The email of the admin the bootstrap creates.
    #[arg(
        long,
        env = "PLAT_BOOTSTRAP_ADMIN_EMAIL",
        default_value = "admin@localhost"
    )]
    pub bootstrap_admin_email: String,
    /// The bootstrap admin's password, for the dashboard (at least 12
    /// characters). Given to the admin when the bootstrap creates it, or
    /// later while that admin still has no password; never changes one.
    #[arg(long, env = "PLAT_BOOTSTRAP_ADMIN_PASSWORD", hide_env_values = true)]
    pub bootstrap_admin_password: Option<Secret>,
    /// Key that encrypts environments, webhook secrets, function sources and
    /// lockfiles at rest (base64 or hex of 32 bytes); compilers and executors
    /// need the same. Required: the API does not start without it.
    #[arg(long, env = "PLAT_SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<SecretsKey>,
    /// Keys `PLAT_SECRETS_KEY` replaced, comma-separated, during a rotation:
    /// they still open what they sealed, and the API re-seals all of it with
    /// the current key at start (docs/security.md, "Key rotation").
    #[arg(
        long,
        env = "PLAT_SECRETS_PREVIOUS_KEYS",
        hide_env_values = true,
        default_value = ""
    )]
    pub secrets_previous_keys: PreviousSecretsKeys,
    /// A browser session ends after this many minutes without a request.
    #[arg(long, env = "PLAT_SESSION_IDLE_MINUTES", default_value_t = 720)]
    pub session_idle_minutes: u32,
    /// A browser session ends this many hours after login, however active.
    #[arg(long, env = "PLAT_SESSION_MAX_HOURS", default_value_t = 168)]
    pub session_max_hours: u32,
    /// Mark the session cookie `Secure` and name it `__Host-plat_session`
    /// (the default). `false` is for plain-HTTP local use only (`plat up`
    /// sets it): the cookie is then `plat_session`, as browsers refuse the
    /// `__Host-` prefix without `Secure`.
    #[arg(long, env = "PLAT_COOKIE_SECURE")]
    pub cookie_secure: Option<bool>,
    /// Requests per second an ADMIN's credential may make, sustained (0: no limit).
    #[arg(long, env = "PLAT_RATE_LIMIT_ADMIN_PER_SEC", default_value_t = 2000.0)]
    pub rate_limit_admin_per_sec: f64,
    /// Requests an ADMIN's credential may make in a burst.
    #[arg(long, env = "PLAT_RATE_LIMIT_ADMIN_BURST", default_value_t = 4000)]
    pub rate_limit_admin_burst: u32,
    /// Requests per second a DEV's credential may make, sustained (0: no limit).
    #[arg(long, env = "PLAT_RATE_LIMIT_DEV_PER_SEC", default_value_t = 200.0)]
    pub rate_limit_dev_per_sec: f64,
    /// Requests a DEV's credential may make in a burst.
    #[arg(long, env = "PLAT_RATE_LIMIT_DEV_BURST", default_value_t = 400)]
    pub rate_limit_dev_burst: u32,
    /// Login (and password reset) attempts per minute from one client
    /// address (an IPv6 client by its /64), whatever the accounts.
    #[arg(long, env = "PLAT_LOGIN_ATTEMPTS_PER_MINUTE", default_value_t = 10)]
    pub login_attempts_per_minute: u32,
    /// Days of execution history kept (0: forever); older finished
    /// executions are deleted in the background.
    #[arg(long, env = "PLAT_RETENTION_DAYS", default_value_t = 30)]
    pub retention_days: u32,
    /// Days of per-function statistics kept (0: forever).
    #[arg(long, env = "PLAT_STATS_RETENTION_DAYS", default_value_t = 400)]
    pub stats_retention_days: u32,
    /// Proxies whose `X-Forwarded-For` names the client: comma-separated
    /// addresses or CIDR blocks. Empty (the default): the TCP peer is the client.
    #[arg(long, env = "PLAT_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: crate::client_addr::TrustedProxies,
    /// Login attempts per minute on one account, from any addresses.
    #[arg(
        long,
        env = "PLAT_LOGIN_ATTEMPTS_PER_ACCOUNT_PER_MINUTE",
        default_value_t = 5
    )]
    pub login_attempts_per_account_per_minute: u32,
    /// Requests with an unknown, expired or revoked API key or session
    /// accepted per minute from one client address before answering 429.
    #[arg(
        long,
        env = "PLAT_INVALID_CREDENTIALS_PER_MINUTE",
        default_value_t = 30
    )]
    pub invalid_credentials_per_minute: u32,
    /// Password hashes (argon2id, 19 MiB each) computed at once by this
    /// process; 0: one per CPU core.
    #[arg(long, env = "PLAT_PASSWORD_HASH_CONCURRENCY", default_value_t = 0)]
    pub password_hash_concurrency: usize,
    /// Hours a password reset token stays usable.
    #[arg(long, env = "PLAT_PASSWORD_RESET_HOURS", default_value_t = 24)]
    pub password_reset_hours: u32,
    /// Most live API keys (neither revoked nor expired) one user may hold;
    /// creating one more answers 409.
    #[arg(long, env = "PLAT_MAX_API_KEYS_PER_USER", default_value_t = 100)]
    pub max_api_keys_per_user: u32,
    /// Seconds an API process trusts a looked-up credential without asking
    /// the database again: the backstop should a revocation's notification
    /// be missed (0: no cache).
    #[arg(long, env = "PLAT_AUTH_CACHE_TTL_SECS", default_value_t = 5)]
    pub auth_cache_ttl_secs: u64,
    /// Most executions one user may have QUEUED or RUNNING at once (a batch
    /// of N inputs counts N); more are refused with 429. Admins are exempt.
    #[arg(long, env = "PLAT_MAX_QUEUED_PER_USER", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_queued_per_user: u32,
    /// Completion webhooks: delivery and outbound requests.
    #[command(flatten)]
    pub webhooks: crate::webhooks::WebhookConfig,
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
            bootstrap_admin_key: None,
            bootstrap_admin_email: "admin@localhost".to_owned(),
            bootstrap_admin_password: None,
            secrets_key: None,
            secrets_previous_keys: PreviousSecretsKeys::default(),
            session_idle_minutes: 720,
            session_max_hours: 168,
            cookie_secure: None,
            rate_limit_admin_per_sec: 2000.0,
            rate_limit_admin_burst: 4000,
            rate_limit_dev_per_sec: 200.0,
            rate_limit_dev_burst: 400,
            login_attempts_per_minute: 10,
            retention_days: 30,
            stats_retention_days: 400,
            trusted_proxies: Default::default(),
            login_attempts_per_account_per_minute: 5,
            invalid_credentials_per_minute: 30,
            password_hash_concurrency: 0,
            password_reset_hours: 24,
            max_api_keys_per_user: 100,
            auth_cache_ttl_secs: 5,
            max_queued_per_user: 10_000,
            webhooks: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use secrecy::ExposeSecret as _;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        api: ApiConfig,
    }

    #[test]
    fn configured_secrets_parse_and_stay_out_of_debug_output() {
        let key = "plat_key-from-the-command-line-0000000000";
        let cli = Cli::try_parse_from(["api", "--bootstrap-admin-key", key]).unwrap();

        assert_eq!(
            cli.api
                .bootstrap_admin_key
                .as_ref()
                .unwrap()
                .expose_secret(),
            key
        );
        assert!(!format!("{:?}", cli.api).contains("command-line"));
    }
}
