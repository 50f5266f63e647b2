//! Where PostgreSQL's server binaries are: `PG_BIN`, else
//! `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`, else
//! `PATH`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::PostgresError;

/// The places [`find_binaries`] looks, in order.
#[derive(Debug, Default)]
pub(crate) struct Search {
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
    pub(crate) fn from_env() -> Self {
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
pub(crate) fn find_binaries(search: &Search) -> Result<PathBuf, PostgresError> {
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
    if let Some(dir) = newest_version(&search.versions_root) {
        return Ok(dir);
    }
    search
        .path
        .as_ref()
        .and_then(|path| std::env::split_paths(path).find(|dir| has_tools(dir)))
        .ok_or(PostgresError::BinariesMissing)
}

fn has_tools(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()
}

/// The `bin` folder of the newest `<versions_root>/<version>` that has the
/// server binaries (Debian installs the client alone in some).
fn newest_version(versions_root: &Path) -> Option<PathBuf> {
    // Numerically: 9.6 and 10 must not sort above 15.
    std::fs::read_dir(versions_root)
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
        .max()
        .map(|(_, dir)| dir)
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
}
