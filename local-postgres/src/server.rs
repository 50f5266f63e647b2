//! Running PostgreSQL's programs on the cluster: `initdb`, `pg_ctl` and,
//! once, `postgres --single`; as the cluster's owner when we are root.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;

use crate::folder::{sibling, write_private};
use crate::{hba, io, LocalPostgres, PostgresError, SUPERUSER};

/// `sun_path` holds 108 bytes on Linux, one of them the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

impl LocalPostgres {
    /// Creates the cluster, its superuser with our password, and password
    /// authentication (SCRAM) for every connection.
    pub(crate) fn init(&self) -> Result<(), PostgresError> {
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
    pub(crate) fn require_password(&self) -> Result<(), PostgresError> {
        tracing::warn!(
            folder = %self.options.data_dir.display(),
            "this PostgreSQL cluster let any local user in as its superuser (trust); it now requires the password in {}",
            self.password_file().display()
        );
        self.set_password_single_user()?;
        let hba = self.options.data_dir.join("pg_hba.conf");
        let text =
            std::fs::read_to_string(&hba).map_err(io(format!("reading {}", hba.display())))?;
        // Rewritten in place, so the file keeps its owner and mode.
        std::fs::write(&hba, hba::without_trust(&text))
            .map_err(io(format!("writing {}", hba.display())))
    }

    /// `alter role postgres password …` through `postgres --single`, which
    /// reads statements from its stdin.
    fn set_password_single_user(&self) -> Result<(), PostgresError> {
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
            // Statement text, not a query with parameters: single-user mode
            // has no protocol to bind them, and utility statements take
            // none anyway. The role is our constant; the password is the
            // one we generated (base64url, checked by `superuser_password`)
            // and is quoted as a literal all the same.
            writeln!(
                stdin,
                "alter role {SUPERUSER} password {};",
                sql_literal(&self.password)
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
        Ok(())
    }

    pub(crate) fn start_server(&self) -> Result<(), PostgresError> {
        let server_options = self.server_options();
        self.run(
            "pg_ctl",
            [
                "start".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-D".as_ref(),
                self.options.data_dir.as_os_str(),
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

    /// `pg_ctl start -o`: where the server listens, SCRAM, and the
    /// caller's settings, each `-c name=value`.
    fn server_options(&self) -> String {
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
        settings
            .iter()
            .map(|(name, value)| format!("-c {}", shell_quote(&format!("{name}={value}"))))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `pg_ctl status` exits 0 only when a live postmaster owns the folder
    /// (a stale `postmaster.pid` from a crash does not count).
    pub(crate) fn is_running(&self) -> bool {
        self.command("pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(&self.options.data_dir)
            .output()
            .is_ok_and(|output| output.status.success())
    }

    pub(crate) fn command(&self, program: &str) -> Command {
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

    pub(crate) fn run<'a>(
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

/// The folder for the unix socket: the cluster's own, unless the socket's
/// path would be too long for the kernel (deep project folders).
fn socket_directory(data_dir: &Path, port: u16) -> Option<&Path> {
    let socket = data_dir.join(format!(".s.PGSQL.{port}"));
    (socket.as_os_str().len() <= MAX_SOCKET_PATH).then_some(data_dir)
}

/// `text` as a SQL string literal (`standard_conforming_strings` is on:
/// only `'` needs doubling).
fn sql_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Single-quotes `word` for `/bin/sh`.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The port a running server reported in `postmaster.pid` (its 4th line).
pub(crate) fn running_port(data_dir: &Path) -> Option<u16> {
    let pid_file = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    pid_file.lines().nth(3)?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

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
    fn a_sql_literal_doubles_its_quotes() {
        assert_eq!(sql_literal("s3cret-_x"), "'s3cret-_x'");
        assert_eq!(sql_literal("it's"), "'it''s'");
    }
}
