//! The login `plat login` stores: which API, with which key. One file,
//! `credentials.json` in Plat's config folder, readable by its owner only.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// Overrides Plat's config folder (tests point it at a temporary folder).
pub const CONFIG_DIR_ENV: &str = "PLAT_CONFIG_DIR";
const FILE_NAME: &str = "credentials.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub api_url: String,
    pub api_key: String,
}

/// Plat's config folder: `$PLAT_CONFIG_DIR`, else `plat/` in the user's
/// config folder (`$XDG_CONFIG_HOME`, `~/.config` on Linux).
pub fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(CONFIG_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    dirs::config_dir()
        .map(|dir| dir.join("plat"))
        .context("cannot tell where your config folder is (no HOME?); set PLAT_CONFIG_DIR")
}

pub fn path() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join(FILE_NAME))
}

/// The stored login, if any.
pub fn load() -> anyhow::Result<Option<Credentials>> {
    let path = path()?;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(anyhow::Error::new(error).context(format!("reading {}", path.display())))
        }
    };
    let credentials = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a valid credentials file; run `plat login` again",
            path.display()
        )
    })?;
    Ok(Some(credentials))
}

/// Stores `credentials`, replacing any earlier login. The file is created
/// with mode 0600 (never readable by others, not even for a moment) under a
/// temporary name and renamed into place, so a crash leaves the old login or
/// the new one, never half of one.
pub fn store(credentials: &Credentials) -> anyhow::Result<PathBuf> {
    let dir = config_dir()?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(FILE_NAME);
    let staged = dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
    let written = write_private(&staged, credentials);
    if let Err(error) = written.and_then(|()| {
        std::fs::rename(&staged, &path).with_context(|| format!("replacing {}", path.display()))
    }) {
        let _ = std::fs::remove_file(&staged);
        return Err(error);
    }
    Ok(path)
}

fn write_private(path: &Path, credentials: &Credentials) -> anyhow::Result<()> {
    let mut file = create_private(path)?;
    let mut json = serde_json::to_vec_pretty(credentials)?;
    json.push(b'\n');
    file.write_all(&json)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Removes the stored login; `false` when there was none.
pub fn remove() -> anyhow::Result<(bool, PathBuf)> {
    let path = path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok((true, path)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok((false, path)),
        Err(error) => {
            Err(anyhow::Error::new(error).context(format!("removing {}", path.display())))
        }
    }
}

/// Two spellings of one API URL (`http://h:1` and `http://h:1/`) are the
/// same API.
pub fn same_api(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Creates a new file only its owner can read: with mode 0600 from the
/// start (a chmod after creating would leave a moment when others could
/// open it); fails if the file exists.
pub(crate) fn create_private(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}
