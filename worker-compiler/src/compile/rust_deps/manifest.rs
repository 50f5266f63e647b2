//! The files cargo reads for a dependency set: the generated manifest, and
//! the lockfile with the declared dependencies written into its header.
//!
//! Cargo.lock does not record features, so the lockfile alone would not say
//! how to build the set. Its first line therefore holds the function's
//! declared dependencies (a TOML comment, which cargo ignores and keeps, and
//! `--locked` accepts): the lockfile is everything a rebuild needs, and the
//! compile after a resolution needs no state kept between the two.

use std::collections::BTreeSet;

use plat_common::dependencies::{Dependencies, DependencySpec};
use serde::Deserialize;
use toml::{Table, Value};

use super::super::prebuilt;
use super::super::ResolvedPackage;

/// The package name of the generated crate, which holds only dependencies.
pub(super) const ROOT_CRATE: &str = "plat-function-deps";
/// Crates the handler template (template/main.rs) needs in every set.
const TEMPLATE_CRATES: [&str; 2] = ["serde", "serde_json"];
/// The header line's prefix.
const HEADER_PREFIX: &str = "# plat-dependencies: ";
const HEADER_NOTE: &str =
    "# The function's declared dependencies (Plat builds this set from them and this lockfile).\n";

/// Why a lockfile does not describe a dependency set.
#[derive(Debug, thiserror::Error)]
pub(super) enum LockfileError {
    #[error("the lockfile has no `{HEADER_PREFIX}` line")]
    NoHeader,
    #[error("the lockfile's dependencies line does not parse: {0}")]
    Header(#[source] serde_json::Error),
    #[error("the lockfile does not parse: {0}")]
    Toml(#[source] toml::de::Error),
}

/// The Cargo.toml of the set's crate: the declared dependencies plus serde
/// (with derive) and serde_json at the allowlist's versions
/// (compile/deps/Cargo.toml), and the allowlist's release profile, whose
/// flags the user compile repeats.
pub(super) fn manifest(dependencies: &Dependencies) -> String {
    let allowlist: Table = prebuilt::MANIFEST
        .parse()
        .expect("compile/deps/Cargo.toml is valid TOML");
    let pinned = |name: &str| -> Table {
        allowlist["dependencies"][name]
            .as_table()
            .cloned()
            .unwrap_or_else(|| {
                let mut table = Table::new();
                table.insert("version".into(), allowlist["dependencies"][name].clone());
                table
            })
    };

    let mut deps = Table::new();
    for (name, spec) in dependencies {
        deps.insert(name.clone(), Value::Table(dependency(spec)));
    }
    for name in TEMPLATE_CRATES {
        let entry = deps
            .entry(name.to_owned())
            .or_insert_with(|| Value::Table(pinned(name)));
        // The template derives Deserialize/Serialize.
        if name == "serde" {
            if let Some(table) = entry.as_table_mut() {
                let features = table
                    .entry("features".to_owned())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Some(list) = features.as_array_mut() {
                    if !list.iter().any(|f| f.as_str() == Some("derive")) {
                        list.push("derive".into());
                    }
                }
            }
        }
    }

    let mut package = Table::new();
    package.insert("name".into(), ROOT_CRATE.into());
    package.insert("version".into(), "0.0.0".into());
    package.insert("edition".into(), "2021".into());
    package.insert("publish".into(), false.into());
    let mut lib = Table::new();
    lib.insert("path".into(), "src/lib.rs".into());
    let mut root = Table::new();
    root.insert("package".into(), Value::Table(package));
    root.insert("lib".into(), Value::Table(lib));
    root.insert("dependencies".into(), Value::Table(deps));
    root.insert("profile".into(), allowlist["profile"].clone());
    // Its own workspace root, wherever the cache dir is.
    root.insert("workspace".into(), Value::Table(Table::new()));
    toml::to_string(&root).expect("a TOML table serializes")
}

fn dependency(spec: &DependencySpec) -> Table {
    let mut table = Table::new();
    table.insert("version".into(), spec.version().into());
    if !spec.features().is_empty() {
        table.insert(
            "features".into(),
            Value::Array(spec.features().iter().map(|f| f.as_str().into()).collect()),
        );
    }
    if !spec.default_features() {
        table.insert("default-features".into(), false.into());
    }
    table
}

/// `cargo_lock` (cargo's text, or an earlier lockfile of ours) with the
/// header naming `dependencies` in place of any earlier header.
pub(super) fn with_header(dependencies: &Dependencies, cargo_lock: &str) -> String {
    let body = strip_header(cargo_lock);
    let declared = serde_json::to_string(dependencies).expect("dependencies serialize");
    format!("{HEADER_NOTE}{HEADER_PREFIX}{declared}\n{body}")
}

fn strip_header(lockfile: &str) -> &str {
    let mut rest = lockfile;
    for line in [HEADER_NOTE.trim_end(), HEADER_PREFIX] {
        if let Some((first, tail)) = rest.split_once('\n') {
            if first.starts_with(line) {
                rest = tail;
            }
        }
    }
    rest
}

/// The declared dependencies written in `lockfile`'s header.
pub(super) fn declared(lockfile: &str) -> Result<Dependencies, LockfileError> {
    let line = lockfile
        .lines()
        .take(4)
        .find_map(|line| line.strip_prefix(HEADER_PREFIX))
        .ok_or(LockfileError::NoHeader)?;
    serde_json::from_str(line).map_err(LockfileError::Header)
}

#[derive(Deserialize)]
struct CargoLock {
    #[serde(default)]
    package: Vec<LockedPackage>,
}

#[derive(Deserialize)]
struct LockedPackage {
    name: String,
    version: String,
    source: Option<String>,
    #[serde(default)]
    dependencies: Vec<String>,
}

/// Every package of `lockfile` but the generated crate; `direct` marks the
/// ones `dependencies` declares (and the generated crate depends on).
pub(super) fn packages(
    lockfile: &str,
    dependencies: &Dependencies,
) -> Result<Vec<ResolvedPackage>, LockfileError> {
    let lock: CargoLock = toml::from_str(lockfile).map_err(LockfileError::Toml)?;
    let is_root = |p: &LockedPackage| p.name == ROOT_CRATE && p.source.is_none();
    // An entry is `name` or `name version` when two versions are locked.
    let direct: BTreeSet<(String, Option<String>)> = lock
        .package
        .iter()
        .filter(|p| is_root(p))
        .flat_map(|p| &p.dependencies)
        .map(|entry| {
            let mut words = entry.split(' ');
            let name = words.next().unwrap_or_default().to_owned();
            (name, words.next().map(str::to_owned))
        })
        .filter(|(name, _)| dependencies.contains_key(name))
        .collect();
    Ok(lock
        .package
        .iter()
        .filter(|p| !is_root(p))
        .map(|p| ResolvedPackage {
            name: p.name.clone(),
            version: p.version.clone(),
            direct: direct.contains(&(p.name.clone(), None))
                || direct.contains(&(p.name.clone(), Some(p.version.clone()))),
        })
        .collect())
}

/// The packages whose library user code may name: the declared ones and
/// the template's.
pub(super) fn exposed(dependencies: &Dependencies) -> Vec<String> {
    let mut names: BTreeSet<String> = dependencies.keys().cloned().collect();
    names.extend(TEMPLATE_CRATES.map(String::from));
    names.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps(json: serde_json::Value) -> Dependencies {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_manifest_adds_the_template_crates_and_keeps_the_declared_features() {
        let manifest = manifest(&deps(serde_json::json!({
            "chrono": {"version": "0.4", "features": ["serde"], "defaultFeatures": false},
            "regex": "1"
        })));
        let parsed: Table = manifest.parse().unwrap();
        let deps = parsed["dependencies"].as_table().unwrap();

        assert_eq!(deps["regex"]["version"].as_str(), Some("1"));
        assert_eq!(deps["chrono"]["default-features"].as_bool(), Some(false));
        assert_eq!(deps["chrono"]["features"][0].as_str(), Some("serde"));
        assert_eq!(deps["serde"]["features"][0].as_str(), Some("derive"));
        assert!(deps["serde_json"]["version"]
            .as_str()
            .unwrap()
            .starts_with('='));
        assert_eq!(
            parsed["profile"]["release"]["panic"].as_str(),
            Some("abort")
        );
    }

    #[test]
    fn a_declared_serde_keeps_derive() {
        let manifest = manifest(&deps(serde_json::json!({
            "serde": {"version": "1", "features": ["rc"]}
        })));
        let parsed: Table = manifest.parse().unwrap();

        let features = parsed["dependencies"]["serde"]["features"]
            .as_array()
            .unwrap();
        assert_eq!(features.len(), 2, "{manifest}");
        assert_eq!(
            parsed["dependencies"]["serde"]["version"].as_str(),
            Some("1")
        );
    }

    #[test]
    fn the_header_round_trips_and_replaces_an_earlier_one() {
        let declared_deps = deps(serde_json::json!({"regex": "1"}));
        let lock = "# This file is automatically @generated by Cargo.\nversion = 4\n";
        let once = with_header(&declared_deps, lock);
        let twice = with_header(&declared_deps, &once);

        assert_eq!(once, twice);
        assert!(once.ends_with(lock));
        assert_eq!(declared(&once).unwrap(), declared_deps);
        assert!(matches!(declared(lock), Err(LockfileError::NoHeader)));
    }
}
