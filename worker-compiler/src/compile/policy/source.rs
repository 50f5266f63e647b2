//! The policy in force: the operator's file, re-read when it changes, or
//! the built-in one.
//!
//! The policy file is checked (one `stat`) on every build, so an edit
//! applies to the very next build: that costs nothing next to a build. The
//! advisory database can be thousands of files, so it is checked at most
//! once per [`DB_CHECK_INTERVAL`]. A change is seen by modification time and
//! size. An edit that does not load keeps the last good policy in force and
//! logs why (the file, the line); it is read again at its next change.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::advisories::{self, AdvisoryDb, Fingerprint};
use super::file;
use super::{DependencyPolicy, PolicyError};

/// How often at most the advisory database's files are looked at.
const DB_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The policy in force: the file at `path` (re-read when it changes), or the
/// built-in default.
#[derive(Debug)]
pub struct PolicySource {
    file: Option<PathBuf>,
    db_check_interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    policy: Arc<DependencyPolicy>,
    /// The policy file as last read, whether it loaded or not (so a broken
    /// edit is reported once, not at every build).
    file_stamp: Option<Stamp>,
    /// The advisory database as last read.
    db_fingerprint: Fingerprint,
    db_checked_at: Instant,
}

/// A file's modification time and size.
type Stamp = (Option<SystemTime>, u64);

/// One load of the policy file: the policy and what it was read from.
struct Loaded {
    policy: DependencyPolicy,
    stamp: Stamp,
    db_fingerprint: Fingerprint,
}

impl PolicySource {
    /// Loads the policy at `path` (the built-in one when `None`); fails when
    /// the file, or the advisory database it names, cannot be used.
    pub fn new(path: Option<&Path>) -> Result<Self, PolicyError> {
        Self::with_db_check_interval(path, DB_CHECK_INTERVAL)
    }

    fn with_db_check_interval(
        path: Option<&Path>,
        db_check_interval: Duration,
    ) -> Result<Self, PolicyError> {
        let (policy, file_stamp, db_fingerprint) = match path {
            None => (DependencyPolicy::default(), None, Fingerprint::new()),
            Some(path) => {
                let loaded = load(path)?;
                tracing::info!(
                    path = %path.display(),
                    advisories = loaded.policy.advisories.len(),
                    "dependency policy loaded"
                );
                (loaded.policy, Some(loaded.stamp), loaded.db_fingerprint)
            }
        };
        Ok(Self {
            file: path.map(Path::to_path_buf),
            db_check_interval,
            state: Mutex::new(State {
                policy: Arc::new(policy),
                file_stamp,
                db_fingerprint,
                db_checked_at: Instant::now(),
            }),
        })
    }

    /// The policy for the next build, re-read first if its file or its
    /// advisory database changed.
    pub fn current(&self) -> Arc<DependencyPolicy> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(path) = &self.file {
            if !reload_file(path, &mut state) {
                self.reload_db(&mut state);
            }
        }
        state.policy.clone()
    }

    /// Re-reads the advisory database of the policy in force if it is time
    /// to look and its files changed.
    fn reload_db(&self, state: &mut State) {
        let paths = &state.policy.rules.advisories.db_paths;
        if paths.is_empty() || state.db_checked_at.elapsed() < self.db_check_interval {
            return;
        }
        state.db_checked_at = Instant::now();
        let fingerprint = match advisories::fingerprint(paths) {
            Ok(fingerprint) if fingerprint == state.db_fingerprint => return,
            Ok(fingerprint) => fingerprint,
            Err(error) => {
                tracing::error!(%error, "the advisory database cannot be read; keeping the one loaded");
                return;
            }
        };
        state.db_fingerprint = fingerprint;
        match AdvisoryDb::load(paths) {
            Ok(db) => {
                tracing::info!(advisories = db.len(), "advisory database reloaded");
                state.policy = Arc::new(DependencyPolicy {
                    rules: state.policy.rules.clone(),
                    advisories: Arc::new(db),
                });
            }
            Err(error) => {
                tracing::error!(%error, "the advisory database does not load; keeping the one loaded")
            }
        }
    }
}

/// Re-reads the policy file if it changed; whether it did.
fn reload_file(path: &Path, state: &mut State) -> bool {
    let stamp = match stamp(path) {
        Ok(stamp) => stamp,
        Err(error) => {
            if state.file_stamp.take().is_some() {
                tracing::error!(%error, "the dependency policy cannot be read; keeping the last good one");
            }
            return false;
        }
    };
    if state.file_stamp == Some(stamp) {
        return false;
    }
    state.file_stamp = Some(stamp);
    match load(path) {
        Ok(loaded) => {
            tracing::info!(
                path = %path.display(),
                advisories = loaded.policy.advisories.len(),
                "dependency policy reloaded"
            );
            state.file_stamp = Some(loaded.stamp);
            state.policy = Arc::new(loaded.policy);
            state.db_fingerprint = loaded.db_fingerprint;
            state.db_checked_at = Instant::now();
        }
        Err(error) => {
            tracing::error!(%error, "the edited dependency policy does not load; keeping the last good one")
        }
    }
    true
}

/// Reads the policy at `path` and the advisory database it names. Each
/// stamp is taken before its read, so a write during the read shows as a
/// change at the next look.
fn load(path: &Path) -> Result<Loaded, PolicyError> {
    let read_error = |source| PolicyError::Read {
        path: path.to_path_buf(),
        source,
    };
    let stamp = stamp(path).map_err(read_error)?;
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    let rules = file::parse(&text, path.parent()).map_err(|source| PolicyError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    let db_fingerprint = advisories::fingerprint(&rules.advisories.db_paths)?;
    let db = AdvisoryDb::load(&rules.advisories.db_paths)?;
    Ok(Loaded {
        policy: DependencyPolicy {
            rules: Arc::new(rules),
            advisories: Arc::new(db),
        },
        stamp,
        db_fingerprint,
    })
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let metadata = std::fs::metadata(path)?;
    Ok((metadata.modified().ok(), metadata.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use plat_common::Language;

    fn deps(json: &str) -> plat_common::dependencies::Dependencies {
        serde_json::from_str(json).unwrap()
    }

    fn allows(policy: &DependencyPolicy, name: &str) -> bool {
        policy
            .check_declared(Language::Rust, &deps(&format!(r#"{{"{name}": "1"}}"#)))
            .is_ok()
    }

    #[test]
    fn without_a_file_the_built_in_policy_applies() {
        let source = PolicySource::new(None).unwrap();
        assert!(allows(&source.current(), "serde"));
        assert!(!allows(&source.current(), "left-pad-rs"));
    }

    #[test]
    fn an_edit_applies_to_the_next_build_and_a_broken_edit_keeps_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "[crates]\nitoa = \"1\"\n").unwrap();
        let source = PolicySource::new(Some(&path)).unwrap();
        assert!(allows(&source.current(), "itoa"));
        assert!(!allows(&source.current(), "ryu"));

        std::fs::write(&path, "[crates]\nitoa = \"1\"\nryu = \"1\"\n").unwrap();
        assert!(allows(&source.current(), "ryu"), "the edit applies");

        std::fs::write(&path, "[crates]\nitoa = \"1\"\nryu = \"1\"\nbad = \n").unwrap();
        let policy = source.current();
        assert!(
            allows(&policy, "ryu") && allows(&policy, "itoa"),
            "the last good one stays"
        );

        std::fs::remove_file(&path).unwrap();
        assert!(
            allows(&source.current(), "ryu"),
            "a missing file keeps it too"
        );

        std::fs::write(&path, "[crates]\n").unwrap();
        assert!(
            !allows(&source.current(), "itoa"),
            "a later good edit applies"
        );
    }

    #[test]
    fn a_policy_that_does_not_load_at_start_is_an_error_naming_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "[crates]\nitoa = \"1\"\n\n[crate]\n").unwrap();

        let error = PolicySource::new(Some(&path)).unwrap_err().to_string();

        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("line 4"), "{error}");
        assert!(error.contains("unknown field `crate`"), "{error}");

        let missing = dir.path().join("missing.toml");
        let error = PolicySource::new(Some(&missing)).unwrap_err().to_string();
        assert!(error.contains("missing.toml"), "{error}");

        std::fs::write(&path, "[advisories]\ndb-paths = [\"osv\"]\n").unwrap();
        let error = PolicySource::new(Some(&path)).unwrap_err().to_string();
        assert!(
            error.contains("osv"),
            "a missing database is named: {error}"
        );
    }

    #[test]
    fn the_advisory_database_is_reread_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let osv = dir.path().join("osv");
        std::fs::create_dir(&osv).unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(
            &path,
            "[crates]\nsmallvec = \"1\"\n[advisories]\ndb-paths = [\"osv\"]\n",
        )
        .unwrap();
        let source = PolicySource::with_db_check_interval(Some(&path), Duration::ZERO).unwrap();
        let deps = deps(r#"{"smallvec": "1"}"#);
        let packages = [crate::compile::ResolvedPackage {
            name: "smallvec".into(),
            version: "1.6.0".into(),
            direct: true,
        }];
        let check = |source: &PolicySource| {
            source
                .current()
                .check_resolved(Language::Rust, &deps, &packages)
        };
        assert!(check(&source).is_ok());

        std::fs::write(
            osv.join("RUSTSEC-2021-0003.json"),
            include_str!("testdata/RUSTSEC-2021-0003.json"),
        )
        .unwrap();
        let error = check(&source).unwrap_err().to_string();
        assert!(error.contains("RUSTSEC-2021-0003"), "{error}");

        std::fs::write(osv.join("broken.json"), "{ not json").unwrap();
        assert!(
            check(&source).is_err(),
            "a database that does not load keeps the one loaded"
        );
    }
}
