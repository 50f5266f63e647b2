//! A PostgreSQL cluster of Plat's own, for `plat up` without `DATABASE_URL`
//! and for tests that must stop and start their database.
//!
//! Who uses it: the `plat` command (`plat up` and `plat migrate` run one in
//! `.plat/postgres` when no `DATABASE_URL` is given), the end-to-end tests
//! (`tests/tests/outage.rs` stops and restarts one under load) and the
//! benchmark (`bench/src/cluster.rs`, a throwaway cluster per profile). It
//! is a crate of its own so that those two need not depend on the CLI, and
//! it depends on no other Plat crate.
//!
//! It uses the system's PostgreSQL binaries (`initdb`, `pg_ctl`: from
//! `PG_BIN`, else `pg_config --bindir`, else Debian's folders, else `PATH`)
//! on a data folder that survives restarts, listening on 127.0.0.1 only and
//! on a unix socket inside the folder; the server log is a sibling file
//! (`.plat/postgres` logs to `.plat/postgres.log`). Every connection, TCP or
//! socket, needs the superuser's password (SCRAM), generated at the first
//! start and kept next to the folder, readable by its owner only
//! (`.plat/postgres-password`): with `trust`, any local user could have
//! connected as the superuser. PostgreSQL refuses to run as root, so when we
//! are root the folder belongs to an unprivileged user (`postgres`, else
//! `nobody`) and the binaries run as that user.
//!
//! The calls block (they wait for `pg_ctl`); async callers use
//! `spawn_blocking`. Blocking is deliberate: a test's `Drop` must be able to
//! stop its cluster.

mod binaries;
mod folder;
mod hba;
mod owner;
mod server;

use std::path::{Path, PathBuf};

use crate::binaries::{find_binaries, Search};
use crate::folder::{log_file, password_file, superuser_password};
use crate::owner::{is_root, unprivileged_user, Owner};

/// Why the local cluster could not be used. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("PostgreSQL's server binaries (initdb, pg_ctl) were not found: install them with `apt-get install postgresql`, or set PG_BIN to their folder, or set DATABASE_URL to use an existing server")]
    BinariesMissing,
    #[error("PG_BIN is {}, but that folder has no initdb and pg_ctl: point it at PostgreSQL's bin folder (e.g. /usr/lib/postgresql/15/bin) or unset it", .0.display())]
    PgBinInvalid(PathBuf),
    #[error("`{command}` failed: {output}")]
    CommandFailed { command: String, output: String },
    #[error("PostgreSQL did not start on 127.0.0.1:{port} (if that port is taken, choose another with --pg-port or PLAT_PG_PORT): {output}")]
    StartFailed { port: u16, output: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("running as root, but no unprivileged user (`postgres` or `nobody`) exists to run PostgreSQL as (PostgreSQL refuses root): create one with `useradd --system postgres`")]
    NoUnprivilegedUser,
    #[error("PostgreSQL runs as `{user}` (it refuses root), but `{user}` cannot enter {}: make it traversable (`chmod o+x {}`) or choose a --data-dir elsewhere (e.g. under /var/lib or /tmp)", .path.display(), .path.display())]
    NotTraversable { user: String, path: PathBuf },
    #[error("the PostgreSQL cluster in {} was made by an older Plat that let any local user connect as its superuser without a password, and it is running: stop it (`pg_ctl stop -D {}`, as the user that owns it) and start Plat again, which gives it a password and turns that off", .0.display(), .0.display())]
    TrustWhileRunning(PathBuf),
}

/// Where and how to run the cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// The cluster's own folder (created by `initdb` on first use).
    pub data_dir: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Extra `-c name=value` server settings (tests turn off fsync).
    pub settings: Vec<(String, String)>,
}

impl Options {
    /// A throwaway cluster in `folder` (a test's temporary folder), on a free
    /// port of 127.0.0.1, with durability off. The folder is made traversable
    /// because, when we are root, the cluster belongs to an unprivileged user.
    pub fn scratch(folder: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o755))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        Ok(Self {
            data_dir: folder.join("postgres"),
            port,
            settings: vec![("fsync".into(), "off".into())],
        })
    }
}

/// A running cluster. Stop it with [`LocalPostgres::stop`]; it is not stopped
/// on drop, so a crashed `plat up` leaves it running for the next one to reuse.
#[derive(Debug)]
pub struct LocalPostgres {
    options: Options,
    bin: PathBuf,
    owner: Option<Owner>,
    log: PathBuf,
    /// The superuser's password (base64url: no quoting needed in a URL or SQL).
    password: String,
    was_running: bool,
}

const SUPERUSER: &str = "postgres";

impl LocalPostgres {
    /// Initialises the folder if it is new, starts the server unless it is
    /// already running (then reuses it, on whatever port it listens), and
    /// waits until it accepts connections.
    pub fn start(options: Options) -> Result<Self, PostgresError> {
        let bin = find_binaries(&Search::from_env())?;
        let owner = if is_root() {
            Some(unprivileged_user()?)
        } else {
            None
        };
        let mut cluster = Self {
            log: log_file(&options.data_dir),
            password: superuser_password(&password_file(&options.data_dir))?,
            options,
            bin,
            owner,
            was_running: false,
        };
        cluster.prepare_folder()?;
        if !cluster.options.data_dir.join("PG_VERSION").exists() {
            cluster.init()?;
        } else if hba::trusts_anyone(&cluster.options.data_dir)? {
            if cluster.is_running() {
                return Err(PostgresError::TrustWhileRunning(cluster.options.data_dir));
            }
            cluster.require_password()?;
        }
        if cluster.is_running() {
            cluster.adopt_running_server();
        } else {
            cluster.start_server()?;
        }
        Ok(cluster)
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/DATABASE`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password, self.options.port
        )
    }

    /// [`url`](Self::url) without the password, to show.
    pub fn display_url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{database}",
            self.options.port
        )
    }

    /// A URL for another user of this cluster, e.g. a service's login role.
    pub fn url_as(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{database}",
            self.options.port
        )
    }

    /// The file holding the superuser's password (mode 0600).
    pub fn password_file(&self) -> PathBuf {
        password_file(&self.options.data_dir)
    }

    /// The server's log file, next to its folder.
    pub fn log_file(&self) -> &Path {
        &self.log
    }

    /// Whether [`start`](Self::start) found the server already running
    /// (then someone else may be using it).
    pub fn was_running(&self) -> bool {
        self.was_running
    }

    /// Stops the server (fast shutdown: open sessions are ended), keeping its data.
    pub fn stop(&self) -> Result<(), PostgresError> {
        if !self.is_running() {
            return Ok(());
        }
        let dir = self.options.data_dir.as_os_str();
        self.run(
            "pg_ctl",
            [
                "stop".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-D".as_ref(),
                dir,
            ],
        )
        .map(drop)
    }

    /// Starts the server again after [`stop`](Self::stop).
    pub fn restart(&self) -> Result<(), PostgresError> {
        if self.is_running() {
            return Ok(());
        }
        self.start_server()
    }

    /// Left running by a `plat up` that crashed (or still running for
    /// another one): reuse it rather than fail on the lock file, on whatever
    /// port it listens.
    fn adopt_running_server(&mut self) {
        self.was_running = true;
        if let Some(port) = server::running_port(&self.options.data_dir) {
            if port != self.options.port {
                tracing::warn!(
                    requested = self.options.port,
                    port,
                    "PostgreSQL was already running on another port; using it"
                );
                self.options.port = port;
            }
        }
    }
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> PostgresError {
    move |source| PostgresError::Io { context, source }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    #[test]
    fn the_url_names_the_superuser_its_password_port_and_database() {
        let cluster = LocalPostgres {
            options: Options {
                data_dir: PathBuf::from("/x/postgres"),
                port: 54329,
                settings: Vec::new(),
            },
            bin: PathBuf::from("/bin"),
            owner: None,
            log: PathBuf::from("/x/postgres.log"),
            password: "s3cret".to_owned(),
            was_running: false,
        };

        let url = cluster.url("plat");

        assert_eq!(url, "postgres://postgres:s3cret@127.0.0.1:54329/plat");
        assert_eq!(
            cluster.display_url("plat"),
            "postgres://postgres@127.0.0.1:54329/plat"
        );
    }

    /// Stops the cluster even when an assertion fails.
    struct Running(LocalPostgres);

    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.stop();
        }
    }

    async fn start(options: &Options) -> Running {
        let options = options.clone();
        let cluster = tokio::task::spawn_blocking(move || LocalPostgres::start(options))
            .await
            .unwrap()
            .unwrap();
        Running(cluster)
    }

    #[tokio::test]
    async fn a_cluster_keeps_its_data_across_a_stop_and_a_start() {
        let parent = tempfile::Builder::new()
            .prefix("plat-pg-test-")
            .tempdir()
            .unwrap();
        let options = Options::scratch(parent.path()).unwrap();
        let first = start(&options).await;
        assert!(!first.0.was_running());
        let pool = plat_common::db::connect(&first.0.url("postgres"), 1)
            .await
            .unwrap();
        let one = sqlx::query_scalar!(r#"select 1 as "one!""#)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(one, 1);
        sqlx::raw_sql("create table kept (n int); insert into kept values (42)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;

        // Act: stop it, and start it again from the same folder.
        drop(first);
        let second = start(&options).await;

        // Assert
        let pool = plat_common::db::connect(&second.0.url("postgres"), 1)
            .await
            .unwrap();
        // Runtime: `kept` is this test's own table, not Plat's schema.
        let kept: i32 = sqlx::query_scalar("select n from kept")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        assert_eq!(kept, 42);
        assert!(!second.0.was_running());
        assert!(log_file(&options.data_dir).is_file());
    }

    /// The SQLSTATE (or the client's message) of a failed connection.
    async fn refusal(url: &str) -> String {
        match plat_common::db::connect(url, 1).await {
            Ok(_) => "connected".to_owned(),
            Err(error) => error
                .as_database_error()
                .and_then(|db| db.code().map(|code| code.into_owned()))
                .unwrap_or_else(|| error.to_string()),
        }
    }

    /// The unix socket's URL, for the same user and password as `url`.
    fn socket_url(cluster: &LocalPostgres, url: &str) -> String {
        format!(
            "{url}?host={}&port={}",
            cluster.options.data_dir.display(),
            cluster.options.port
        )
    }

    const INVALID_PASSWORD: &str = "28P01";

    #[tokio::test]
    async fn plat_up_s_cluster_refuses_connections_without_its_password() {
        let parent = tempfile::Builder::new()
            .prefix("plat-pg-test-")
            .tempdir()
            .unwrap();
        let options = Options::scratch(parent.path()).unwrap();

        let cluster = start(&options).await;

        let without = cluster.0.display_url("postgres");
        let wrong = cluster.0.url_as(SUPERUSER, "guessed", "postgres");
        let with = cluster.0.url("postgres");
        assert_ne!(without, with);
        assert_ne!(refusal(&without).await, "connected");
        assert_eq!(refusal(&wrong).await, INVALID_PASSWORD);
        assert_eq!(
            refusal(&socket_url(&cluster.0, &wrong)).await,
            INVALID_PASSWORD
        );
        assert_eq!(refusal(&with).await, "connected");
        assert_eq!(refusal(&socket_url(&cluster.0, &with)).await, "connected");
        let file = std::fs::metadata(cluster.0.password_file()).unwrap();
        assert_eq!(file.mode() & 0o777, 0o600);
        let hba = std::fs::read_to_string(options.data_dir.join("pg_hba.conf")).unwrap();
        assert!(
            !hba.lines().any(|line| hba::method(line) == Some("trust")),
            "{hba}"
        );
    }

    /// A cluster as Plat made it before passwords: `initdb --auth=trust`.
    fn old_trusting_cluster(options: &Options) -> LocalPostgres {
        let cluster = LocalPostgres {
            log: log_file(&options.data_dir),
            password: String::new(),
            options: options.clone(),
            bin: find_binaries(&Search::from_env()).unwrap(),
            owner: is_root().then(|| unprivileged_user().unwrap()),
            was_running: false,
        };
        cluster.prepare_folder().unwrap();
        let dir = options.data_dir.as_os_str();
        cluster
            .run(
                "initdb",
                ["-D".as_ref(), dir, "-U".as_ref(), SUPERUSER.as_ref()]
                    .into_iter()
                    .chain(["--auth=trust", "-E", "UTF8", "--no-locale"].map(AsRef::as_ref)),
            )
            .unwrap();
        cluster
    }

    #[tokio::test]
    async fn an_old_trusting_cluster_requires_the_password_after_its_next_start() {
        let parent = tempfile::Builder::new()
            .prefix("plat-pg-test-")
            .tempdir()
            .unwrap();
        let options = Options::scratch(parent.path()).unwrap();
        let old = old_trusting_cluster(&options);
        old.start_server().unwrap();
        let running = Running(old);
        let pool = plat_common::db::connect(&running.0.display_url("postgres"), 1)
            .await
            .unwrap();
        sqlx::raw_sql("create table kept (n int); insert into kept values (7)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        // Running, it is refused rather than used as it is.
        let refused = {
            let options = options.clone();
            tokio::task::spawn_blocking(move || LocalPostgres::start(options))
                .await
                .unwrap()
                .unwrap_err()
        };
        assert!(
            matches!(refused, PostgresError::TrustWhileRunning(_)),
            "{refused}"
        );
        drop(running);

        // Act: the next start, stopped.
        let cluster = start(&options).await;

        // Assert
        assert_ne!(
            refusal(&cluster.0.display_url("postgres")).await,
            "connected"
        );
        let wrong = cluster.0.url_as(SUPERUSER, "guessed", "postgres");
        assert_eq!(
            refusal(&socket_url(&cluster.0, &wrong)).await,
            INVALID_PASSWORD
        );
        let pool = plat_common::db::connect(&cluster.0.url("postgres"), 1)
            .await
            .unwrap();
        // Runtime: `kept` is this test's own table, not Plat's schema.
        let kept: i32 = sqlx::query_scalar("select n from kept")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        assert_eq!(kept, 7);
    }
}
