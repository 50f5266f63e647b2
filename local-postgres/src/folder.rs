//! The cluster's folder and the files Plat keeps next to it: the server
//! log and the superuser's password.

use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;

use crate::owner::{check_reachable, chown_tree};
use crate::{io, LocalPostgres, PostgresError};

impl LocalPostgres {
    /// Creates the folder (and parents) owned by the cluster's user, mode
    /// 0700 as PostgreSQL requires, and the log file next to it.
    pub(crate) fn prepare_folder(&self) -> Result<(), PostgresError> {
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
}

/// `.plat/postgres` → `.plat/postgres.log`.
pub(crate) fn log_file(data_dir: &Path) -> PathBuf {
    sibling(data_dir, ".log")
}

/// `.plat/postgres` → `.plat/postgres<suffix>`.
pub(crate) fn sibling(data_dir: &Path, suffix: &str) -> PathBuf {
    let mut name = data_dir
        .file_name()
        .map_or_else(|| OsString::from("postgres"), OsString::from);
    name.push(suffix);
    data_dir.with_file_name(name)
}

/// `.plat/postgres` → `.plat/postgres-password`.
pub(crate) fn password_file(data_dir: &Path) -> PathBuf {
    sibling(data_dir, "-password")
}

/// The superuser's password from `path`, made (mode 0600) on first use.
pub(crate) fn superuser_password(path: &Path) -> Result<String, PostgresError> {
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
            let password = new_password();
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
pub(crate) fn write_private(path: &Path, text: &str) -> Result<(), PostgresError> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| writeln!(file, "{text}"))
        .map_err(io(format!("writing {}", path.display())))
}

/// A new password: 32 random bytes, base64url (43 characters), so it needs
/// no quoting in a URL or a SQL literal.
fn new_password() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_sits_next_to_the_cluster_folder() {
        assert_eq!(
            log_file(Path::new(".plat/postgres")),
            Path::new(".plat/postgres.log")
        );
    }

    #[test]
    fn a_new_password_is_long_and_needs_no_quoting() {
        let password = new_password();

        assert_eq!(password.len(), 43);
        assert!(password
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(password, new_password());
    }
}
