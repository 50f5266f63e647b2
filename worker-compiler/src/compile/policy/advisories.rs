//! The advisory database: OSV records (https://ossf.github.io/osv-schema/)
//! for crates.io and npm, and which of them name a resolved package.
//!
//! Only what the checks need is kept: the records' `crates.io` and `npm`
//! entries, indexed by package, so a large export (all of GitHub's advisory
//! database) costs memory for those two ecosystems only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Deserialize;

use super::PolicyError;

/// The package ecosystems Plat resolves, by their OSV names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Ecosystem {
    /// `crates.io`: versions compared as SemVer (the `semver` crate).
    Crates,
    /// `npm`: versions compared as node-semver does.
    Npm,
}

impl Ecosystem {
    fn from_osv(name: &str) -> Option<Self> {
        match name {
            "crates.io" => Some(Self::Crates),
            "npm" => Some(Self::Npm),
            _ => None,
        }
    }
}

/// One advisory, as shown in a refusal or warning.
#[derive(Debug)]
pub(super) struct Advisory {
    pub id: String,
    pub aliases: Vec<String>,
    pub summary: String,
}

/// One `affected` entry of an advisory: the versions of one package it names.
#[derive(Debug)]
struct Affected {
    advisory: Arc<Advisory>,
    ranges: Vec<OsvRange>,
    versions: Vec<String>,
}

/// A resolved package an advisory names.
#[derive(Debug)]
pub(super) struct Match<'a> {
    pub advisory: &'a Advisory,
    pub package: &'a str,
    pub version: &'a str,
    /// The versions that fix it, above the resolved one.
    pub fixed: Vec<String>,
}

/// Advisories by package.
#[derive(Debug, Default)]
pub(super) struct AdvisoryDb {
    by_package: HashMap<(Ecosystem, String), Vec<Affected>>,
}

impl AdvisoryDb {
    /// Reads every OSV record under `paths` (files, or directories searched
    /// recursively for `*.json`). A record that does not read is an error
    /// naming its file: a database that silently lost records would let
    /// vulnerable versions through.
    pub(super) fn load(paths: &[PathBuf]) -> Result<Self, PolicyError> {
        let mut db = Self::default();
        for file in files(paths)? {
            let text = std::fs::read(&file).map_err(|source| PolicyError::Read {
                path: file.clone(),
                source,
            })?;
            let records: OneOrMany =
                serde_json::from_slice(&text).map_err(|source| PolicyError::Advisory {
                    path: file.clone(),
                    source,
                })?;
            let records = match records {
                OneOrMany::One(record) => vec![record],
                OneOrMany::Many(records) => records,
            };
            for record in records {
                db.add(record);
            }
        }
        Ok(db)
    }

    fn add(&mut self, record: OsvRecord) {
        if record.withdrawn.is_some() {
            return;
        }
        let advisory = Arc::new(Advisory {
            id: record.id,
            aliases: record.aliases,
            summary: record
                .summary
                .or_else(|| record.details.map(|details| first_line(&details)))
                .unwrap_or_default(),
        });
        for affected in record.affected {
            let Some(package) = affected.package else {
                continue;
            };
            let Some(ecosystem) = Ecosystem::from_osv(&package.ecosystem) else {
                continue;
            };
            self.by_package
                .entry((ecosystem, package.name))
                .or_default()
                .push(Affected {
                    advisory: advisory.clone(),
                    ranges: affected.ranges,
                    versions: affected.versions,
                });
        }
    }

    /// How many package entries the database holds (for the log).
    pub(super) fn len(&self) -> usize {
        self.by_package.values().map(Vec::len).sum()
    }

    /// The advisories naming `name` at `version`.
    pub(super) fn matches<'a>(
        &'a self,
        ecosystem: Ecosystem,
        name: &'a str,
        version: &'a str,
    ) -> Vec<Match<'a>> {
        let Some(entries) = self.by_package.get(&(ecosystem, name.to_owned())) else {
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(|affected| {
                let fixed = match ecosystem {
                    Ecosystem::Crates => affects(affected, version, |v| {
                        semver::Version::parse(v.trim_start_matches('v')).ok()
                    }),
                    Ecosystem::Npm => {
                        affects(affected, version, |v| nodejs_semver::Version::parse(v).ok())
                    }
                }?;
                Some(Match {
                    advisory: &affected.advisory,
                    package: name,
                    version,
                    fixed,
                })
            })
            .collect()
    }
}

/// Whether `affected` names `version`; if so, the fixed versions above it.
fn affects<V: Ord>(
    affected: &Affected,
    version: &str,
    parse: impl Fn(&str) -> Option<V>,
) -> Option<Vec<String>> {
    let listed = affected.versions.iter().any(|listed| listed == version);
    let parsed = parse(version);
    let in_range = parsed.as_ref().is_some_and(|parsed| {
        affected
            .ranges
            .iter()
            .any(|range| range.covers(parsed, &parse))
    });
    if !listed && !in_range {
        return None;
    }
    let fixed = affected
        .ranges
        .iter()
        .flat_map(|range| &range.events)
        .filter_map(|event| event.fixed.as_deref())
        .filter(|fixed| match (parse(fixed), &parsed) {
            (Some(fixed), Some(parsed)) => fixed > *parsed,
            _ => false,
        })
        .map(str::to_owned)
        .collect();
    Some(fixed)
}

/// A bound of an OSV event: `introduced = "0"` is below every version.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Bound<V> {
    Zero,
    At(V),
}

impl OsvRange {
    /// The OSV schema's evaluation: walk the events in version order; an
    /// `introduced` at or below the version makes it affected, a `fixed` at
    /// or below it (or a `last_affected` below it) unaffected again. `GIT`
    /// ranges name commits, not versions, and are skipped.
    fn covers<V: Ord>(&self, version: &V, parse: &impl Fn(&str) -> Option<V>) -> bool {
        if self.kind != "SEMVER" && self.kind != "ECOSYSTEM" {
            return false;
        }
        let bound = |text: &str| {
            if text == "0" {
                Some(Bound::Zero)
            } else {
                parse(text).map(Bound::At)
            }
        };
        let mut events: Vec<(Bound<V>, EventKind)> = Vec::new();
        for event in &self.events {
            for (text, kind) in [
                (&event.introduced, EventKind::Introduced),
                (&event.fixed, EventKind::Fixed),
                (&event.last_affected, EventKind::LastAffected),
            ] {
                // An event whose version does not parse is skipped: it
                // cannot be placed among the others.
                if let Some(at) = text.as_deref().and_then(bound) {
                    events.push((at, kind));
                }
            }
        }
        events.sort_by(|a, b| a.0.cmp(&b.0));
        let at_or_below = |at: &Bound<V>| match at {
            Bound::Zero => true,
            Bound::At(at) => at <= version,
        };
        let mut affected = false;
        for (at, kind) in &events {
            match kind {
                EventKind::Introduced if at_or_below(at) => affected = true,
                EventKind::Fixed if at_or_below(at) => affected = false,
                EventKind::LastAffected if at_or_below(at) && !is(at, version) => affected = false,
                _ => {}
            }
        }
        affected
    }
}

#[derive(Clone, Copy)]
enum EventKind {
    Introduced,
    Fixed,
    LastAffected,
}

/// Whether the bound is exactly `version`.
fn is<V: Ord>(at: &Bound<V>, version: &V) -> bool {
    matches!(at, Bound::At(at) if at == version)
}

/// The files a database's paths name, in a stable order.
pub(super) fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, PolicyError> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, true, &mut files)?;
    }
    Ok(files)
}

fn collect(path: &Path, named: bool, files: &mut Vec<PathBuf>) -> Result<(), PolicyError> {
    let read_error = |source| PolicyError::Read {
        path: path.to_path_buf(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(read_error)?;
    if metadata.is_dir() {
        let mut entries = std::fs::read_dir(path)
            .map_err(read_error)?
            .map(|entry| entry.map(|entry| entry.path()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(read_error)?;
        entries.sort();
        for entry in entries {
            collect(&entry, false, files)?;
        }
    } else if named || path.extension().is_some_and(|ext| ext == "json") {
        // A file named in the policy is read whatever its name; inside a
        // directory only `*.json` (a git checkout also holds a README).
        files.push(path.to_path_buf());
    }
    Ok(())
}

/// What tells a changed database from the one loaded: each file with its
/// modification time and size.
pub(super) type Fingerprint = Vec<(PathBuf, Option<SystemTime>, u64)>;

/// The [`Fingerprint`] of the files under `paths` now.
pub(super) fn fingerprint(paths: &[PathBuf]) -> Result<Fingerprint, PolicyError> {
    files(paths)?
        .into_iter()
        .map(|file| {
            let metadata = std::fs::metadata(&file).map_err(|source| PolicyError::Read {
                path: file.clone(),
                source,
            })?;
            Ok((file, metadata.modified().ok(), metadata.len()))
        })
        .collect()
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_owned()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(OsvRecord),
    Many(Vec<OsvRecord>),
}

/// The parts of an OSV record the checks read (others are ignored).
#[derive(Deserialize)]
struct OsvRecord {
    id: String,
    #[serde(default)]
    aliases: Vec<String>,
    summary: Option<String>,
    details: Option<String>,
    withdrawn: Option<String>,
    #[serde(default)]
    affected: Vec<OsvAffected>,
}

#[derive(Deserialize)]
struct OsvAffected {
    package: Option<OsvPackage>,
    #[serde(default)]
    ranges: Vec<OsvRange>,
    #[serde(default)]
    versions: Vec<String>,
}

#[derive(Deserialize)]
struct OsvPackage {
    ecosystem: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct OsvRange {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    events: Vec<OsvEvent>,
}

#[derive(Debug, Deserialize)]
struct OsvEvent {
    introduced: Option<String>,
    fixed: Option<String>,
    last_affected: Option<String>,
}
