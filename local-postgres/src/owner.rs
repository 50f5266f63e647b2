//! The unprivileged user that owns and runs the cluster when we are root
//! (PostgreSQL refuses to run as root), and what it must be able to reach.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use crate::{io, PostgresError};

/// The unprivileged user that owns and runs the cluster when we are root.
#[derive(Debug, Clone)]
pub(crate) struct Owner {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) home: PathBuf,
}

pub(crate) fn is_root() -> bool {
    // Our own /proc entry is owned by our effective uid (std has no safe geteuid).
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `postgres` (Debian's package creates it), else `nobody`, from /etc/passwd.
pub(crate) fn unprivileged_user() -> Result<Owner, PostgresError> {
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
pub(crate) fn check_reachable(dir: &Path, owner: &Owner) -> Result<(), PostgresError> {
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

pub(crate) fn chown_tree(path: &Path, owner: &Owner) -> Result<(), PostgresError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn postgres_user() -> Owner {
        Owner {
            name: "postgres".into(),
            uid: 101,
            gid: 104,
            home: PathBuf::from("/var/lib/postgresql"),
        }
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
    fn the_unprivileged_user_comes_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                      postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n";

        let postgres = passwd_entry(passwd, "postgres").unwrap();

        assert_eq!((postgres.uid, postgres.gid), (101, 104));
        assert_eq!(postgres.home, Path::new("/var/lib/postgresql"));
        assert!(passwd_entry(passwd, "postgre").is_none());
    }
}
