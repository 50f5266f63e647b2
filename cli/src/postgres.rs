//! A PostgreSQL cluster of Plat's own, for `plat up` without `DATABASE_URL`
//! and for tests that must stop and start their database.
//!
//! It uses the system's PostgreSQL binaries (`initdb`, `pg_ctl`) on a data
//! folder that survives restarts, listening on 127.0.0.1 only and on a unix
//! socket inside the folder. PostgreSQL refuses to run as root, so when we
//! are root the folder belongs to an unprivileged user (`postgres`, else
//! `nobody`) and the binaries run as that user.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why the local cluster could not be used. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("PostgreSQL's server binaries (initdb, pg_ctl) were not found; install them with `apt-get install postgresql`, or set PG_BIN to their folder, or set DATABASE_URL to use an existing server")]
    BinariesMissing,
    #[error("`{command}` failed: {output}")]
    CommandFailed { command: String, output: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("running as root, but no unprivileged user (`postgres` or `nobody`) exists to run PostgreSQL as")]
    NoUnprivilegedUser,
    #[error("the unprivileged user `{user}` cannot reach {}: make every folder above it traversable (chmod o+x) or choose another --data-dir", path.display())]
    NotTraversable { user: String, path: PathBuf },
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

/// A running cluster. Stop it with [`LocalPostgres::stop`]; it is not stopped
/// on drop, so a crashed `plat up` leaves it running for the next one to reuse.
#[derive(Debug)]
pub struct LocalPostgres {
    options: Options,
    bin: PathBuf,
    owner: Option<Owner>,
}

/// The unprivileged user that owns and runs the cluster when we are root.
#[derive(Debug, Clone)]
struct Owner {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

const SUPERUSER: &str = "postgres";

impl LocalPostgres {
    /// Initialises the folder if it is new, starts the server unless it is
    /// already running (reusing it), and waits until it accepts connections.
    pub fn start(options: Options) -> Result<Self, PostgresError> {
        let bin = find_binaries().ok_or(PostgresError::BinariesMissing)?;
        let owner = if is_root() {
            Some(unprivileged_user()?)
        } else {
            None
        };
        let cluster = Self {
            options,
            bin,
            owner,
        };
        cluster.prepare_folder()?;
        if !cluster.options.data_dir.join("PG_VERSION").exists() {
            cluster.run(
                "initdb",
                [
                    "-D".as_ref(),
                    cluster.options.data_dir.as_os_str(),
                    "-U".as_ref(),
                    SUPERUSER.as_ref(),
                    "--auth=trust".as_ref(),
                    "-E".as_ref(),
                    "UTF8".as_ref(),
                    "--no-instructions".as_ref(),
                ],
            )?;
        }
        if !cluster.is_running() {
            cluster.start_server()?;
        }
        Ok(cluster)
    }

    /// `postgres://postgres@127.0.0.1:PORT/DATABASE`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{database}",
            self.options.port
        )
    }

    /// Stops the server (fast shutdown: open sessions are ended), keeping its data.
    pub fn stop(&self) -> Result<(), PostgresError> {
        if !self.is_running() {
            return Ok(());
        }
        self.run(
            "pg_ctl",
            [
                "stop".as_ref(),
                "-w".as_ref(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-D".as_ref(),
                self.options.data_dir.as_os_str(),
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

    fn start_server(&self) -> Result<(), PostgresError> {
        let dir = &self.options.data_dir;
        let mut server_options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories='{}'",
            self.options.port,
            dir.display()
        );
        for (name, value) in &self.options.settings {
            server_options.push_str(&format!(" -c {name}={value}"));
        }
        let log = dir.join("server.log");
        self.run(
            "pg_ctl",
            [
                "start".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-D".as_ref(),
                dir.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                server_options.as_ref(),
            ],
        )
        .map(drop)
    }

    fn is_running(&self) -> bool {
        self.command("pg_ctl")
            .args([
                "status".as_ref(),
                "-D".as_ref(),
                self.options.data_dir.as_os_str(),
            ])
            .output()
            .is_ok_and(|output| output.status.success())
    }

    /// Creates the folder (and parents) owned by the cluster's user, mode 0700
    /// as PostgreSQL requires.
    fn prepare_folder(&self) -> Result<(), PostgresError> {
        let dir = &self.options.data_dir;
        let io = |context: String| move |source| PostgresError::Io { context, source };
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        if let Some(owner) = &self.owner {
            std::os::unix::fs::chown(dir, Some(owner.uid), Some(owner.gid))
                .map_err(io(format!("giving {} to {}", dir.display(), owner.name)))?;
            // Every folder above must be traversable by the owner.
            let absolute =
                std::fs::canonicalize(dir).map_err(io(format!("resolving {}", dir.display())))?;
            for ancestor in absolute.ancestors().skip(1) {
                let mode = std::fs::metadata(ancestor)
                    .map(|m| m.permissions().mode())
                    .unwrap_or(0);
                if mode & 0o001 == 0 {
                    return Err(PostgresError::NotTraversable {
                        user: owner.name.clone(),
                        path: ancestor.to_path_buf(),
                    });
                }
            }
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io(format!("restricting {}", dir.display())))
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        if let Some(owner) = &self.owner {
            command
                .uid(owner.uid)
                .gid(owner.gid)
                .env("HOME", &owner.home)
                .env("USER", &owner.name);
        }
        command.current_dir(&self.options.data_dir);
        command
    }

    fn run<'a>(
        &self,
        program: &str,
        args: impl IntoIterator<Item = &'a OsStr>,
    ) -> Result<String, PostgresError> {
        let mut command = self.command(program);
        command.args(args);
        let description = format!("{program} {:?}", command.get_args().collect::<Vec<_>>());
        let output = command.output().map_err(|source| PostgresError::Io {
            context: format!("running {description}"),
            source,
        })?;
        if !output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stdout));
            let log = self.options.data_dir.join("server.log");
            if let Ok(server_log) = std::fs::read_to_string(&log) {
                let tail: Vec<&str> = server_log.lines().rev().take(10).collect();
                text.push_str(&format!("\n(last lines of {}:)\n", log.display()));
                text.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            }
            return Err(PostgresError::CommandFailed {
                command: description,
                output: text.trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// `PG_BIN`, else `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian keeps initdb off PATH), else PATH.
fn find_binaries() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("PG_BIN").map(PathBuf::from) {
        return has_tools(&dir).then_some(dir);
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && has_tools(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            Some((
                entry.file_name().to_str()?.parse().ok()?,
                entry.path().join("bin"),
            ))
        })
        .filter(|(_, dir)| has_tools(dir))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Some(dir);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).find(|dir| has_tools(dir))
}

fn is_root() -> bool {
    // Our own /proc entry is owned by our effective uid.
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

fn unprivileged_user() -> Result<Owner, PostgresError> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for wanted in ["postgres", "nobody"] {
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() >= 6 && fields[0] == wanted {
                if let (Ok(uid), Ok(gid)) = (fields[2].parse(), fields[3].parse()) {
                    return Ok(Owner {
                        name: wanted.to_owned(),
                        uid,
                        gid,
                        home: PathBuf::from(fields[5]),
                    });
                }
            }
        }
    }
    Err(PostgresError::NoUnprivilegedUser)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_names_the_superuser_port_and_database() {
        let cluster = LocalPostgres {
            options: Options {
                data_dir: PathBuf::from("/x"),
                port: 54329,
                settings: Vec::new(),
            },
            bin: PathBuf::from("/bin"),
            owner: None,
        };

        assert_eq!(
            cluster.url("plat"),
            "postgres://postgres@127.0.0.1:54329/plat"
        );
    }

    #[test]
    fn a_cluster_keeps_its_data_across_a_stop_and_a_start() {
        // Under target/, which the unprivileged user can traverse on this
        // project's machines (/tmp works too).
        let parent = tempfile::Builder::new()
            .prefix("plat-pg-test-")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = Options {
            data_dir: parent.path().join("pg"),
            port,
            settings: vec![("fsync".into(), "off".into())],
        };
        let psql = |cluster: &LocalPostgres, sql: &str| {
            cluster
                .run(
                    "psql",
                    [
                        cluster.url("postgres").as_ref(),
                        "-tAc".as_ref(),
                        sql.as_ref(),
                    ],
                )
                .unwrap()
                .trim()
                .to_owned()
        };

        let cluster = LocalPostgres::start(options.clone()).unwrap();
        psql(
            &cluster,
            "create table kept (n int); insert into kept values (42)",
        );
        cluster.stop().unwrap();
        let again = LocalPostgres::start(options).unwrap();
        let kept = psql(&again, "select n from kept");
        again.stop().unwrap();

        assert_eq!(kept, "42");
    }
}
