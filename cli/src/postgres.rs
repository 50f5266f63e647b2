//! A PostgreSQL cluster of Plat's own, for `plat up` without `DATABASE_URL`
//! and for tests that must stop and start their database.
//!
//! It uses the system's PostgreSQL binaries (`initdb`, `pg_ctl`) on a data
//! folder that survives restarts, listening on 127.0.0.1 only and on a unix
//! socket inside the folder; the server log is a sibling file
//! (`.plat/postgres` logs to `.plat/postgres.log`). Every connection, TCP
//! or socket, needs the superuser's password (SCRAM), generated at the
//! first start and kept next to the folder, readable by its owner only
//! (`.plat/postgres-password`): with `trust`, any local user could have
//! connected as the superuser. PostgreSQL refuses to
//! run as root, so when we are root the folder belongs to an unprivileged
//! user (`postgres`, else `nobody`) and the binaries run as that user.
//!
//! The calls block (they wait for `pg_ctl`); async callers use
//! `spawn_blocking`. Blocking is deliberate: a test's `Drop` must be able to
//! stop its cluster.

use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

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

/// The unprivileged user that owns and runs the cluster when we are root.
#[derive(Debug, Clone)]
struct Owner {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

const SUPERUSER: &str = "postgres";

/// `sun_path` holds 108 bytes on Linux, one of them the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

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
        } else if trusts_anyone(&cluster.options.data_dir)? {
            if cluster.is_running() {
                return Err(PostgresError::TrustWhileRunning(cluster.options.data_dir));
            }
            cluster.require_password()?;
        }
        if cluster.is_running() {
            // Left running by a `plat up` that crashed (or still running for
            // another one): reuse it rather than fail on the lock file.
            cluster.was_running = true;
            if let Some(port) = running_port(&cluster.options.data_dir) {
                if port != cluster.options.port {
                    tracing::warn!(
                        requested = cluster.options.port,
                        port,
                        "PostgreSQL was already running on another port; using it"
                    );
                    cluster.options.port = port;
                }
            }
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

    /// Creates the cluster, its superuser with our password, and password
    /// authentication (SCRAM) for every connection.
    fn init(&self) -> Result<(), PostgresError> {
        // initdb reads the password from a file; when we are root it runs as
        // the owner, who cannot read ours: it gets a copy of its own.
        let pwfile = sibling(&self.options.data_dir, "-initdb-password");
        let _ = std::fs::remove_file(&pwfile);
        write_private(&pwfile, &self.password)?;
        if let Some(owner) = &self.owner {
            std::os::unix::fs::chown(&pwfile, Some(owner.uid), Some(owner.gid))
                .map_err(io(format!("giving {} to {}", pwfile.display(), owner.name)))?;
        }
        let mut pwfile_arg = OsString::from("--pwfile=");
        pwfile_arg.push(&pwfile);
        let dir = self.options.data_dir.as_os_str();
        // `--no-locale`: the server must not depend on which locales the
        // machine happens to have generated (a `LANG` naming a missing one
        // makes initdb fail); Plat compares names byte-wise anyway.
        let created = self.run(
            "initdb",
            [
                "-D".as_ref(),
                dir,
                "-U".as_ref(),
                SUPERUSER.as_ref(),
                pwfile_arg.as_os_str(),
            ]
            .into_iter()
            .chain(["--auth=scram-sha-256", "-E", "UTF8", "--no-locale"].map(AsRef::as_ref)),
        );
        let _ = std::fs::remove_file(&pwfile);
        created.map(drop)
    }

    /// Turns a cluster made by an older Plat (`trust`) into one that asks
    /// for the password: sets it in single-user mode (the server is not
    /// running, and no connection could authenticate yet), then rewrites
    /// pg_hba.conf. The order matters: a crash in between leaves a cluster
    /// that still trusts, and the next start does it again.
    fn require_password(&self) -> Result<(), PostgresError> {
        tracing::warn!(
            folder = %self.options.data_dir.display(),
            "this PostgreSQL cluster let any local user in as its superuser (trust); it now requires the password in {}",
            self.password_file().display()
        );
        let mut command = self.command("postgres");
        command
            .args(["--single", "-c", "password_encryption=scram-sha-256", "-D"])
            .arg(&self.options.data_dir)
            .arg("postgres")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(io("running postgres --single".to_owned()))?;
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().expect("stdin is piped");
            writeln!(
                stdin,
                "alter role {SUPERUSER} password '{}';",
                self.password
            )
            .map_err(io("writing to postgres --single".to_owned()))?;
        }
        let output = child
            .wait_with_output()
            .map_err(io("running postgres --single".to_owned()))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Single-user mode reports a failed statement on stderr and still
        // exits 0.
        if !output.status.success() || stderr.contains("ERROR") {
            return Err(PostgresError::CommandFailed {
                command: "postgres --single (setting the superuser's password)".to_owned(),
                output: stderr.trim().to_owned(),
            });
        }
        let hba = self.options.data_dir.join("pg_hba.conf");
        let text =
            std::fs::read_to_string(&hba).map_err(io(format!("reading {}", hba.display())))?;
        // Rewritten in place, so the file keeps its owner and mode.
        std::fs::write(&hba, without_trust(&text)).map_err(io(format!("writing {}", hba.display())))
    }

    fn start_server(&self) -> Result<(), PostgresError> {
        let dir = &self.options.data_dir;
        let socket_dir = match socket_directory(dir, self.options.port) {
            Some(dir) => dir.display().to_string(),
            None => {
                tracing::warn!(
                    folder = %dir.display(),
                    "the folder's path is too long for a unix socket; PostgreSQL listens on TCP only"
                );
                String::new()
            }
        };
        let mut settings = vec![
            ("listen_addresses".to_owned(), "127.0.0.1".to_owned()),
            ("port".to_owned(), self.options.port.to_string()),
            ("unix_socket_directories".to_owned(), socket_dir),
            // SCRAM for the passwords we set (PostgreSQL 13 stored md5,
            // which pg_hba.conf's scram-sha-256 would refuse).
            ("password_encryption".to_owned(), "scram-sha-256".to_owned()),
        ];
        settings.extend(self.options.settings.iter().cloned());
        // pg_ctl hands `-o` to `/bin/sh -c "exec postgres …"`, so each
        // setting is one shell word.
        let server_options = settings
            .iter()
            .map(|(name, value)| format!("-c {}", shell_quote(&format!("{name}={value}"))))
            .collect::<Vec<_>>()
            .join(" ");
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
                self.log.as_os_str(),
                "-o".as_ref(),
                server_options.as_ref(),
            ],
        )
        .map(drop)
        .map_err(|error| match error {
            PostgresError::CommandFailed { output, .. } => PostgresError::StartFailed {
                port: self.options.port,
                output,
            },
            other => other,
        })
    }

    /// `pg_ctl status` exits 0 only when a live postmaster owns the folder
    /// (a stale `postmaster.pid` from a crash does not count).
    fn is_running(&self) -> bool {
        self.command("pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(&self.options.data_dir)
            .output()
            .is_ok_and(|output| output.status.success())
    }

    /// Creates the folder (and parents) owned by the cluster's user, mode
    /// 0700 as PostgreSQL requires, and the log file next to it.
    fn prepare_folder(&self) -> Result<(), PostgresError> {
        let dir = &self.options.data_dir;
        if let Some(owner) = &self.owner {
            // Before creating anything: a folder the owner cannot reach
            // would otherwise fail later with initdb's vaguer message.
            check_reachable(dir, owner)?;
        }
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        // Opened by pg_ctl as the owner, who may not be able to create files
        // in the parent folder: create it here and hand it over.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.log)
            .map_err(io(format!("creating {}", self.log.display())))?;
        if let Some(owner) = &self.owner {
            let metadata =
                std::fs::metadata(dir).map_err(io(format!("reading {}", dir.display())))?;
            if metadata.uid() != owner.uid {
                // New, or made by another user (e.g. copied as root): the
                // whole cluster must belong to the user that runs it.
                chown_tree(dir, owner)?;
            }
            std::os::unix::fs::chown(&self.log, Some(owner.uid), Some(owner.gid)).map_err(io(
                format!("giving {} to {}", self.log.display(), owner.name),
            ))?;
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io(format!("restricting {}", dir.display())))
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        if let Some(owner) = &self.owner {
            // std also drops root's supplementary groups before `setuid`.
            let home = if owner.home.is_dir() {
                &owner.home
            } else {
                &self.options.data_dir
            };
            command
                .uid(owner.uid)
                .gid(owner.gid)
                .env("HOME", home)
                .env("USER", &owner.name)
                .env("LOGNAME", &owner.name);
        }
        // Our own folder may not be readable by the owner (initdb warns
        // about that); the cluster folder always is.
        command.current_dir(&self.options.data_dir);
        command
    }

    fn run<'a>(
        &self,
        program: &str,
        args: impl IntoIterator<Item = &'a std::ffi::OsStr>,
    ) -> Result<String, PostgresError> {
        let mut command = self.command(program);
        command.args(args);
        let description = std::iter::once(program.to_owned())
            .chain(
                command
                    .get_args()
                    .map(|arg| arg.to_string_lossy().into_owned()),
            )
            .collect::<Vec<_>>()
            .join(" ");
        let output = command
            .output()
            .map_err(io(format!("running {description}")))?;
        if !output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stdout));
            // pg_ctl's own message is vague ("could not start server"); the
            // reason (port taken, bad setting) is in the server log.
            if let Ok(server_log) = std::fs::read_to_string(&self.log) {
                let lines: Vec<&str> = server_log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(10)..];
                if !tail.is_empty() {
                    text.push_str(&format!("\n(last lines of {}:)\n", self.log.display()));
                    text.push_str(&tail.join("\n"));
                }
            }
            return Err(PostgresError::CommandFailed {
                command: description,
                output: text.trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> PostgresError {
    move |source| PostgresError::Io { context, source }
}

/// `.plat/postgres` → `.plat/postgres.log`.
fn log_file(data_dir: &Path) -> PathBuf {
    sibling(data_dir, ".log")
}

/// `.plat/postgres` → `.plat/postgres<suffix>`.
fn sibling(data_dir: &Path, suffix: &str) -> PathBuf {
    let mut name = data_dir
        .file_name()
        .map_or_else(|| OsString::from("postgres"), OsString::from);
    name.push(suffix);
    data_dir.with_file_name(name)
}

/// `.plat/postgres` → `.plat/postgres-password`.
fn password_file(data_dir: &Path) -> PathBuf {
    sibling(data_dir, "-password")
}

/// The superuser's password from `path`, made (mode 0600) on first use.
fn superuser_password(path: &Path) -> Result<String, PostgresError> {
    match std::fs::read_to_string(path) {
        Ok(password) => {
            let password = password.trim().to_owned();
            // It goes into a URL and a SQL literal unquoted: only what we
            // generate is accepted.
            if password.is_empty()
                || !password
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(PostgresError::Io {
                    context: format!("reading {}", path.display()),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the password must be letters, digits, `-` and `_` (delete the file to generate one, if the cluster was never started with it)",
                    ),
                });
            }
            Ok(password)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(io(format!("creating {}", parent.display())))?;
            }
            let password = plat_api::new_password();
            write_private(path, &password)?;
            Ok(password)
        }
        Err(error) => Err(PostgresError::Io {
            context: format!("reading {}", path.display()),
            source: error,
        }),
    }
}

/// Writes a new file only its owner can read (0600 from the start).
fn write_private(path: &Path, text: &str) -> Result<(), PostgresError> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| writeln!(file, "{text}"))
        .map_err(io(format!("writing {}", path.display())))
}

/// Whether pg_hba.conf lets anyone in without a password (`trust`, as
/// older Plat versions made it).
fn trusts_anyone(data_dir: &Path) -> Result<bool, PostgresError> {
    let hba = data_dir.join("pg_hba.conf");
    let text = std::fs::read_to_string(&hba).map_err(io(format!("reading {}", hba.display())))?;
    Ok(text.lines().any(|line| method(line) == Some("trust")))
}

/// The authentication method of a pg_hba.conf rule: its last field.
fn method(line: &str) -> Option<&str> {
    let rule = line.split('#').next().unwrap_or_default();
    rule.split_whitespace().last()
}

/// pg_hba.conf with every `trust` rule asking for a SCRAM password instead.
fn without_trust(text: &str) -> String {
    let mut rewritten = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        let rule = line.split('#').next().unwrap_or_default();
        match (method(line), rule.rfind("trust")) {
            (Some("trust"), Some(at)) => {
                rewritten.push_str(&line[..at]);
                rewritten.push_str("scram-sha-256");
                rewritten.push_str(&line[at + "trust".len()..]);
            }
            _ => rewritten.push_str(line),
        }
        rewritten.push('\n');
    }
    rewritten
}

/// The folder for the unix socket: the cluster's own, unless the socket's
/// path would be too long for the kernel (deep project folders).
fn socket_directory(data_dir: &Path, port: u16) -> Option<&Path> {
    let socket = data_dir.join(format!(".s.PGSQL.{port}"));
    (socket.as_os_str().len() <= MAX_SOCKET_PATH).then_some(data_dir)
}

/// Single-quotes `word` for `/bin/sh`.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The port a running server reported in `postmaster.pid` (its 4th line).
fn running_port(data_dir: &Path) -> Option<u16> {
    let pid_file = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    pid_file.lines().nth(3)?.trim().parse().ok()
}

/// Whether `owner` (with only its primary group: std drops the others) may
/// enter the folder `metadata` describes.
fn can_traverse(metadata: &Metadata, owner: &Owner) -> bool {
    may_enter(metadata.mode(), metadata.uid(), metadata.gid(), owner)
}

fn may_enter(mode: u32, uid: u32, gid: u32, owner: &Owner) -> bool {
    let bit = if uid == owner.uid {
        0o100
    } else if gid == owner.gid {
        0o010
    } else {
        0o001
    };
    mode & bit != 0
}

/// Checks that `owner` can enter every existing folder above `dir` (with
/// symlinks resolved); the folders we create below them are 0755.
fn check_reachable(dir: &Path, owner: &Owner) -> Result<(), PostgresError> {
    let absolute = std::path::absolute(dir).map_err(io(format!("resolving {}", dir.display())))?;
    let Some(existing) = absolute.ancestors().find(|folder| folder.exists()) else {
        return Ok(());
    };
    let resolved =
        std::fs::canonicalize(existing).map_err(io(format!("resolving {}", existing.display())))?;
    // The cluster folder itself is handed to the owner; only those above count.
    let skip = usize::from(existing == absolute);
    for folder in resolved.ancestors().skip(skip) {
        let metadata =
            std::fs::metadata(folder).map_err(io(format!("reading {}", folder.display())))?;
        if !can_traverse(&metadata, owner) {
            return Err(PostgresError::NotTraversable {
                user: owner.name.clone(),
                path: folder.to_path_buf(),
            });
        }
    }
    Ok(())
}

fn chown_tree(path: &Path, owner: &Owner) -> Result<(), PostgresError> {
    std::os::unix::fs::lchown(path, Some(owner.uid), Some(owner.gid)).map_err(io(format!(
        "giving {} to {}",
        path.display(),
        owner.name
    )))?;
    let metadata =
        std::fs::symlink_metadata(path).map_err(io(format!("reading {}", path.display())))?;
    if metadata.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io(format!("listing {}", path.display())))? {
            let entry = entry.map_err(io(format!("listing {}", path.display())))?;
            chown_tree(&entry.path(), owner)?;
        }
    }
    Ok(())
}

/// The places [`find_binaries`] looks, in order.
#[derive(Debug, Default)]
struct Search {
    /// `PG_BIN`: the user said where; nothing else is tried.
    pg_bin: Option<PathBuf>,
    /// `pg_config --bindir` (right when the server and libpq-dev match).
    pg_config_bindir: Option<PathBuf>,
    /// Debian keeps initdb off PATH, in `/usr/lib/postgresql/<major>/bin`.
    versions_root: PathBuf,
    /// `PATH` (other distributions, Homebrew).
    path: Option<OsString>,
}

impl Search {
    fn from_env() -> Self {
        let pg_config_bindir = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
        Self {
            pg_bin: std::env::var_os("PG_BIN")
                .filter(|dir| !dir.is_empty())
                .map(PathBuf::from),
            pg_config_bindir,
            versions_root: PathBuf::from("/usr/lib/postgresql"),
            path: std::env::var_os("PATH"),
        }
    }
}

/// `PG_BIN`, else `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin`, else PATH.
fn find_binaries(search: &Search) -> Result<PathBuf, PostgresError> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = &search.pg_bin {
        return if has_tools(dir) {
            Ok(dir.clone())
        } else {
            Err(PostgresError::PgBinInvalid(dir.clone()))
        };
    }
    if let Some(dir) = search
        .pg_config_bindir
        .as_deref()
        .filter(|dir| has_tools(dir))
    {
        return Ok(dir.to_path_buf());
    }
    // Numerically: 9.6 and 10 must not sort above 15.
    let newest = std::fs::read_dir(&search.versions_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: Vec<u32> = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_tools(dir))
        .max();
    if let Some((_, dir)) = newest {
        return Ok(dir);
    }
    search
        .path
        .as_ref()
        .and_then(|path| std::env::split_paths(path).find(|dir| has_tools(dir)))
        .ok_or(PostgresError::BinariesMissing)
}

fn is_root() -> bool {
    // Our own /proc entry is owned by our effective uid (std has no safe geteuid).
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `postgres` (Debian's package creates it), else `nobody`, from /etc/passwd.
fn unprivileged_user() -> Result<Owner, PostgresError> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    ["postgres", "nobody"]
        .into_iter()
        .find_map(|wanted| passwd_entry(&passwd, wanted))
        .ok_or(PostgresError::NoUnprivilegedUser)
}

fn passwd_entry(passwd: &str, wanted: &str) -> Option<Owner> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 6 || fields[0] != wanted {
            return None;
        }
        Some(Owner {
            name: wanted.to_owned(),
            uid: fields[2].parse().ok()?,
            gid: fields[3].parse().ok()?,
            home: PathBuf::from(fields[5]),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake bin folder with empty `initdb` and `pg_ctl`.
    fn tools_in(dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        for tool in ["initdb", "pg_ctl"] {
            std::fs::write(dir.join(tool), "").unwrap();
        }
        dir.to_path_buf()
    }

    fn postgres_user() -> Owner {
        Owner {
            name: "postgres".into(),
            uid: 101,
            gid: 104,
            home: PathBuf::from("/var/lib/postgresql"),
        }
    }

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

    #[test]
    fn the_log_sits_next_to_the_cluster_folder() {
        assert_eq!(
            log_file(Path::new(".plat/postgres")),
            Path::new(".plat/postgres.log")
        );
    }

    #[test]
    fn pg_bin_wins_over_every_other_place() {
        let root = tempfile::tempdir().unwrap();
        let search = Search {
            pg_bin: Some(tools_in(&root.path().join("mine"))),
            pg_config_bindir: Some(tools_in(&root.path().join("pg_config"))),
            versions_root: root.path().join("versions"),
            path: None,
        };
        tools_in(&root.path().join("versions/15/bin"));

        let found = find_binaries(&search).unwrap();

        assert_eq!(found, root.path().join("mine"));
    }

    #[test]
    fn a_pg_bin_without_the_tools_is_reported_rather_than_ignored() {
        let root = tempfile::tempdir().unwrap();
        let search = Search {
            pg_bin: Some(root.path().join("empty")),
            pg_config_bindir: Some(tools_in(&root.path().join("pg_config"))),
            ..Search::default()
        };

        let error = find_binaries(&search).unwrap_err();

        assert!(matches!(error, PostgresError::PgBinInvalid(_)), "{error}");
        assert!(error.to_string().contains("empty"), "{error}");
    }

    #[test]
    fn pg_config_comes_before_the_debian_folders() {
        let root = tempfile::tempdir().unwrap();
        tools_in(&root.path().join("versions/16/bin"));
        let search = Search {
            pg_config_bindir: Some(tools_in(&root.path().join("pg_config"))),
            versions_root: root.path().join("versions"),
            ..Search::default()
        };

        let found = find_binaries(&search).unwrap();

        assert_eq!(found, root.path().join("pg_config"));
    }

    #[test]
    fn the_newest_debian_version_wins_by_number_not_by_spelling() {
        let root = tempfile::tempdir().unwrap();
        for version in ["9.6", "15", "13"] {
            tools_in(&root.path().join(format!("versions/{version}/bin")));
        }
        // A version without the server binaries (only the client) is skipped.
        std::fs::create_dir_all(root.path().join("versions/17/bin")).unwrap();
        let search = Search {
            pg_config_bindir: Some(root.path().join("no-such-folder")),
            versions_root: root.path().join("versions"),
            ..Search::default()
        };

        let found = find_binaries(&search).unwrap();

        assert_eq!(found, root.path().join("versions/15/bin"));
    }

    #[test]
    fn path_is_the_last_resort() {
        let root = tempfile::tempdir().unwrap();
        let on_path = tools_in(&root.path().join("usr/local/bin"));
        let search = Search {
            versions_root: root.path().join("versions"),
            path: Some(std::env::join_paths([root.path().join("bin"), on_path.clone()]).unwrap()),
            ..Search::default()
        };

        let found = find_binaries(&search).unwrap();

        assert_eq!(found, on_path);
    }

    #[test]
    fn finding_nothing_says_how_to_install_postgresql() {
        let root = tempfile::tempdir().unwrap();
        let search = Search {
            versions_root: root.path().join("versions"),
            path: Some(root.path().as_os_str().to_owned()),
            ..Search::default()
        };

        let error = find_binaries(&search).unwrap_err();

        assert!(
            error.to_string().contains("apt-get install postgresql"),
            "{error}"
        );
    }

    #[test]
    fn only_the_permission_bits_that_apply_to_the_user_count() {
        let user = postgres_user();

        assert!(may_enter(0o755, 0, 0, &user), "others may enter");
        assert!(!may_enter(0o700, 0, 0, &user), "only root may enter /root");
        assert!(may_enter(0o710, 0, user.gid, &user), "its group may enter");
        assert!(may_enter(0o700, user.uid, 0, &user), "its own folder");
        assert!(
            !may_enter(0o077, user.uid, 0, &user),
            "owner bits apply to the owner"
        );
    }

    #[test]
    fn a_too_deep_folder_gets_no_unix_socket() {
        let shallow = Path::new("/home/dev/hello/.plat/postgres");
        let deep = PathBuf::from(format!("/{}", "d".repeat(100)));

        assert_eq!(socket_directory(shallow, 54329), Some(shallow));
        assert_eq!(socket_directory(&deep, 54329), None);
    }

    #[test]
    fn settings_survive_the_shell_that_pg_ctl_starts() {
        assert_eq!(shell_quote("port=5432"), "'port=5432'");
        assert_eq!(shell_quote("a'b c"), r"'a'\''b c'");
    }

    #[test]
    fn the_unprivileged_user_comes_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                      postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n";

        let postgres = passwd_entry(passwd, "postgres").unwrap();

        assert_eq!((postgres.uid, postgres.gid), (101, 104));
        assert_eq!(postgres.home, Path::new("/var/lib/postgresql"));
        assert!(passwd_entry(passwd, "postgre").is_none());
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
        let one: i32 = sqlx::query_scalar("select 1")
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
            !hba.lines().any(|line| method(line) == Some("trust")),
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
        let kept: i32 = sqlx::query_scalar("select n from kept")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        assert_eq!(kept, 7);
    }

    #[test]
    fn only_trust_rules_are_rewritten() {
        let hba = "# TYPE DATABASE USER ADDRESS METHOD\n\
                   local all all trust\n\
                   host all all 127.0.0.1/32 trust # trust me\n\
                   host all all ::1/128 scram-sha-256\n";

        let rewritten = without_trust(hba);

        assert_eq!(
            rewritten,
            "# TYPE DATABASE USER ADDRESS METHOD\n\
             local all all scram-sha-256\n\
             host all all 127.0.0.1/32 scram-sha-256 # trust me\n\
             host all all ::1/128 scram-sha-256\n"
        );
    }
}
