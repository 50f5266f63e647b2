//! A throwaway PostgreSQL cluster per profile, in a temporary folder, with
//! the schema applied. Stopped (and its folder removed) on drop, so an error
//! half-way through a run leaves no server behind.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::Context as _;
use plat_local_postgres::{LocalPostgres, Options};
use tempfile::TempDir;

use crate::machine::command_output;

/// The database the platform runs in (the cluster's `postgres` database is
/// only used to create it).
const DATABASE: &str = "plat_bench";

/// Which server settings a run measures under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Stock settings: every commit waits for its WAL flush (fsync on).
    Durable,
    /// `synchronous_commit=off`: commits return before the WAL flush. A crash
    /// may lose the last few hundred ms of commits, never consistency; the
    /// cheapest way to buy commit latency, so worth knowing what it buys.
    Async,
}

impl Profile {
    /// The key in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Durable => "durable",
            Profile::Async => "async",
        }
    }

    /// The column title in the table.
    pub fn label(self) -> &'static str {
        match self {
            Profile::Durable => "durable",
            Profile::Async => "synchronous_commit=off",
        }
    }

    /// Server settings on top of the stock ones. `Options::scratch` would
    /// turn fsync off, which is exactly what a benchmark must not measure,
    /// so the options are built here.
    pub fn settings(self) -> Vec<(String, String)> {
        // Four executors, the API, a compiler and the bench's own pools
        // need more than the stock 100 connections at the busiest moment.
        let mut settings = vec![("max_connections".to_owned(), "200".to_owned())];
        if self == Profile::Async {
            settings.push(("synchronous_commit".to_owned(), "off".to_owned()));
        }
        settings
    }
}

pub struct Cluster {
    postgres: Option<LocalPostgres>,
    data_dir: PathBuf,
    /// Removed after the server stops (fields drop after `Drop::drop`).
    _folder: TempDir,
}

impl Cluster {
    /// Starts a fresh cluster for `profile` and creates the platform's
    /// database with the schema applied.
    pub async fn start(profile: Profile) -> anyhow::Result<Self> {
        // On disk next to the system's temporary files: the durable profile
        // must fsync to a real disk (a tmpfs would make fsync free).
        let folder = tempfile::Builder::new()
            .prefix("plat-bench-")
            .tempdir()
            .context("creating the cluster's temporary folder")?;
        // When we are root the cluster belongs to an unprivileged user, who
        // must be able to enter the folder.
        std::fs::set_permissions(folder.path(), std::fs::Permissions::from_mode(0o755))?;
        let options = Options {
            data_dir: folder.path().join("postgres"),
            port: free_port()?,
            settings: profile.settings(),
        };
        let data_dir = options.data_dir.clone();
        let postgres = tokio::task::spawn_blocking(move || LocalPostgres::start(options))
            .await?
            .context("starting PostgreSQL")?;
        let cluster = Self {
            postgres: Some(postgres),
            data_dir,
            _folder: folder,
        };
        let admin = plat_common::db::connect(&cluster.url("postgres"), 1).await?;
        sqlx::query(&format!("create database {DATABASE}"))
            .execute(&admin)
            .await
            .context("creating the database")?;
        admin.close().await;
        let pool = plat_common::db::connect(&cluster.database_url(), 2).await?;
        plat_common::db::migrate(&pool)
            .await
            .context("applying migrations")?;
        pool.close().await;
        Ok(cluster)
    }

    /// The platform's database.
    pub fn database_url(&self) -> String {
        self.url(DATABASE)
    }

    fn url(&self, database: &str) -> String {
        self.postgres
            .as_ref()
            .expect("the cluster is running")
            .url(database)
    }

    /// `postgres --version` of the server binary actually running (found
    /// through its pid, so it is the one `LocalPostgres` chose, whatever
    /// PATH says).
    pub fn postgres_version(&self) -> Option<String> {
        let pid = self.postmaster_pid()?;
        let binary = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        command_output(&binary, &["--version"])
    }

    /// The server's main process (the first line of `postmaster.pid`).
    pub fn postmaster_pid(&self) -> Option<u32> {
        let pid_file = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        pid_file.lines().next()?.trim().parse().ok()
    }

    /// Stops the server (fast shutdown) and removes its folder.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(postgres) = self.postgres.take() {
            tokio::task::spawn_blocking(move || postgres.stop())
                .await?
                .context("stopping PostgreSQL")?;
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(postgres) = self.postgres.take() {
            // Blocking is fine here: it is the last thing a failed run does.
            let _ = postgres.stop();
        }
    }
}

/// A port that was free a moment ago (the server binds it right after).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
