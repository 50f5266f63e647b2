//! Plat's npm lockfile: every package of a resolution with its exact
//! version, tarball and integrity, and the edges between them, so a rebuild
//! installs exactly the same files without asking the registry anything but
//! the tarballs (docs/dependencies.md, "npm packages").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The only layout this compiler writes and reads.
pub(crate) const LOCKFILE_VERSION: u32 = 1;

/// A resolved set of npm packages. Maps are ordered, so the same resolution
/// always serialises to the same bytes (and so to the same [`hash`](Self::hash)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Lockfile {
    pub(crate) lockfile_version: u32,
    /// What the function declared: package name → npm range.
    pub(crate) declared: BTreeMap<String, String>,
    /// The declared packages' exact versions: name → version.
    pub(crate) direct: BTreeMap<String, String>,
    /// Every package, direct or not, keyed `name@version`.
    pub(crate) packages: BTreeMap<String, LockedPackage>,
}

/// One package of a [`Lockfile`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct LockedPackage {
    pub(crate) name: String,
    pub(crate) version: String,
    /// The tarball's URL, as the registry gave it.
    pub(crate) resolved: String,
    /// The registry's Subresource Integrity string (`sha512-…`).
    pub(crate) integrity: String,
    /// Its dependencies (and required peers): name → exact version, each
    /// also a key of [`Lockfile::packages`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) dependencies: BTreeMap<String, String>,
}

/// The key of a package in [`Lockfile::packages`].
pub(crate) fn key(name: &str, version: &str) -> String {
    format!("{name}@{version}")
}

impl Lockfile {
    /// Parses a stored lockfile; `None` when it is not one this compiler
    /// wrote or its edges point at packages it does not hold (it is then
    /// resolved again rather than trusted).
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let lock: Self = serde_json::from_str(text).ok()?;
        if lock.lockfile_version != LOCKFILE_VERSION {
            return None;
        }
        let holds = |name: &str, version: &str| lock.packages.contains_key(&key(name, version));
        let consistent = lock.direct.iter().all(|(n, v)| holds(n, v))
            && lock.packages.iter().all(|(k, p)| {
                *k == key(&p.name, &p.version) && p.dependencies.iter().all(|(n, v)| holds(n, v))
            });
        consistent.then_some(lock)
    }

    /// The lockfile as stored: pretty JSON, so a person can read it.
    pub(crate) fn to_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a lockfile serialises");
        text.push('\n');
        text
    }

    /// The sha256 (hex) of [`to_text`](Self::to_text): names the installed
    /// package tree of this exact set.
    pub(crate) fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.to_text().as_bytes()))
    }
}
