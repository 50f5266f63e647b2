//! Resolving declared npm ranges to exact versions with the registry's
//! metadata, breadth first, into a [`Lockfile`].

use std::collections::{BTreeMap, HashMap, VecDeque};

use nodejs_semver::{Range, Version};
use serde::Deserialize;

use super::lockfile::{key, LockedPackage, Lockfile, LOCKFILE_VERSION};
use super::{PackageError, Registry};

/// Most packages one function's dependencies may pull in, direct or not:
/// each is downloaded, unpacked and bundled.
pub(crate) const MAX_PACKAGES: usize = 500;
/// Largest package metadata document read (the abbreviated form of a
/// package with thousands of versions is a few MB).
const MAX_METADATA_BYTES: usize = 64 << 20;

/// The abbreviated metadata of one package (`application/vnd.npm.install-v1+json`).
#[derive(Debug, Deserialize)]
struct Packument {
    #[serde(rename = "dist-tags", default)]
    dist_tags: HashMap<String, String>,
    #[serde(default)]
    versions: HashMap<String, Manifest>,
}

/// One version in a [`Packument`].
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    #[serde(default)]
    dependencies: BTreeMap<String, String>,
    #[serde(default)]
    optional_dependencies: BTreeMap<String, String>,
    #[serde(default)]
    peer_dependencies: BTreeMap<String, String>,
    #[serde(default)]
    peer_dependencies_meta: BTreeMap<String, PeerMeta>,
    dist: Dist,
}

#[derive(Debug, Default, Deserialize)]
struct PeerMeta {
    #[serde(default)]
    optional: bool,
}

#[derive(Debug, Deserialize)]
struct Dist {
    tarball: String,
    integrity: Option<String>,
}

impl Manifest {
    /// What a package needs installed next to it: its dependencies and its
    /// required peers (as npm 7+ installs them), but not its optional
    /// dependencies (mostly native binaries for one platform, which a
    /// WebAssembly function cannot load anyway).
    fn needs(&self) -> BTreeMap<String, String> {
        let mut needs: BTreeMap<String, String> = self
            .dependencies
            .iter()
            .filter(|(name, _)| !self.optional_dependencies.contains_key(*name))
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        for (name, range) in &self.peer_dependencies {
            let optional = self
                .peer_dependencies_meta
                .get(name)
                .is_some_and(|meta| meta.optional);
            if !optional {
                needs.entry(name.clone()).or_insert_with(|| range.clone());
            }
        }
        needs
    }
}

/// Resolves `declared` (name → range) and everything it needs.
pub(crate) async fn resolve(
    registry: &Registry,
    declared: &BTreeMap<String, String>,
) -> Result<Lockfile, PackageError> {
    let mut packuments: HashMap<String, Packument> = HashMap::new();
    let mut lock = Lockfile {
        lockfile_version: LOCKFILE_VERSION,
        declared: declared.clone(),
        direct: BTreeMap::new(),
        packages: BTreeMap::new(),
    };
    // (who needs it: None for the function, name, range)
    let mut queue: VecDeque<(Option<String>, String, String)> = declared
        .iter()
        .map(|(name, range)| (None, name.clone(), range.clone()))
        .collect();
    while let Some((needed_by, name, range)) = queue.pop_front() {
        if !packuments.contains_key(&name) {
            let packument = fetch_packument(registry, &name).await?;
            packuments.insert(name.clone(), packument);
        }
        let packument = &packuments[&name];
        let version = choose(packument, &name, &range, needed_by.as_deref())?;
        match &needed_by {
            None => {
                lock.direct.insert(name.clone(), version.clone());
            }
            Some(parent) => {
                if let Some(parent) = lock.packages.get_mut(parent) {
                    parent.dependencies.insert(name.clone(), version.clone());
                }
            }
        }
        let package_key = key(&name, &version);
        if lock.packages.contains_key(&package_key) {
            continue;
        }
        if lock.packages.len() >= MAX_PACKAGES {
            return Err(PackageError::TooMany { max: MAX_PACKAGES });
        }
        let manifest = &packument.versions[&version];
        let integrity = manifest
            .dist
            .integrity
            .clone()
            .filter(|i| i.split_whitespace().any(|h| h.starts_with("sha512-")))
            .ok_or_else(|| PackageError::NoIntegrity {
                package: package_key.clone(),
            })?;
        for (dependency, dependency_range) in manifest.needs() {
            queue.push_back((Some(package_key.clone()), dependency, dependency_range));
        }
        lock.packages.insert(
            package_key,
            LockedPackage {
                name: name.clone(),
                version,
                resolved: manifest.dist.tarball.clone(),
                integrity,
                dependencies: BTreeMap::new(),
            },
        );
    }
    Ok(lock)
}

/// The version `range` picks, as npm does: the `latest` tag when it is in
/// range, else the highest version in range (pre-releases only when the
/// range names one); a dist-tag (`latest`, `next`) is taken as it is.
fn choose(
    packument: &Packument,
    name: &str,
    range: &str,
    needed_by: Option<&str>,
) -> Result<String, PackageError> {
    let no_match = || PackageError::NoMatch {
        name: name.to_owned(),
        range: range.to_owned(),
        needed_by: needed_by.map(str::to_owned),
    };
    let Ok(parsed) = Range::parse(range) else {
        if let Some(tagged) = packument.dist_tags.get(range.trim()) {
            return packument
                .versions
                .contains_key(tagged)
                .then(|| tagged.clone())
                .ok_or_else(no_match);
        }
        return Err(PackageError::UnsupportedRange {
            name: name.to_owned(),
            range: range.to_owned(),
            needed_by: needed_by.map(str::to_owned),
        });
    };
    let latest = packument.dist_tags.get("latest").filter(|latest| {
        packument.versions.contains_key(*latest)
            && Version::parse(latest).is_ok_and(|v| parsed.satisfies(&v))
    });
    if let Some(latest) = latest {
        return Ok(latest.clone());
    }
    let versions: Vec<Version> = packument
        .versions
        .keys()
        .filter_map(|v| Version::parse(v).ok())
        .collect();
    let best = parsed.max_satisfying(&versions).ok_or_else(no_match)?;
    // The registry's own spelling of the version, so it is a key of `versions`.
    let best = best.to_string();
    packument
        .versions
        .contains_key(&best)
        .then_some(best)
        .ok_or_else(no_match)
}

async fn fetch_packument(registry: &Registry, name: &str) -> Result<Packument, PackageError> {
    // A scoped name's slash is escaped: `@scope%2fname`.
    let url = format!(
        "{}/{}",
        registry.url.trim_end_matches('/'),
        name.replace('/', "%2f")
    );
    let unreachable = |source: reqwest::Error| PackageError::Unreachable {
        what: format!("the metadata of `{name}`"),
        source,
    };
    let response = registry
        .get(&url, Some("application/vnd.npm.install-v1+json"))
        .await
        .map_err(unreachable)?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(PackageError::NotFound {
            name: name.to_owned(),
        });
    }
    let response = response.error_for_status().map_err(unreachable)?;
    let body = super::read_limited(response, MAX_METADATA_BYTES)
        .await
        .map_err(unreachable)?
        .ok_or_else(|| PackageError::TooLarge {
            what: format!("the metadata of `{name}`"),
        })?;
    serde_json::from_slice(&body).map_err(|error| PackageError::BadMetadata {
        name: name.to_owned(),
        reason: error.to_string(),
    })
}
