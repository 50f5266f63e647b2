//! Recent resolutions, reused for a few minutes: the second function that
//! declares the same set in the same language takes the lockfile the first
//! one resolved, without asking the registry again. Resolving costs network
//! round trips (cargo's index, npm's metadata) that would otherwise make a
//! build whose set is already built several times slower than one without
//! dependencies (docs/dependencies.md, "Time to READY").
//!
//! Only successful resolutions are kept, for [`REUSE_FOR`]; the policy is
//! still applied to every build, so an allowlist or advisory change counts at
//! once. A version with a stored lockfile never gets here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use plat_common::dependencies::Dependencies;
use plat_common::Language;

use super::Resolution;

/// How long a resolution is reused: short enough that a release published
/// since is picked up soon, long enough for a burst of deploys of one set.
const REUSE_FOR: Duration = Duration::from_secs(300);
/// Most sets kept; the oldest go first beyond it.
const MAX_KEPT: usize = 256;

/// Resolutions by language and declared set.
#[derive(Debug, Default)]
pub(super) struct RecentResolutions {
    kept: Mutex<HashMap<(Language, String), (Instant, Resolution)>>,
}

impl RecentResolutions {
    /// The resolution of `dependencies` made less than [`REUSE_FOR`] ago.
    pub(super) fn get(
        &self,
        language: Language,
        dependencies: &Dependencies,
    ) -> Option<Resolution> {
        let kept = self.kept.lock().expect("not poisoned");
        kept.get(&(language, key(dependencies)))
            .filter(|(at, _)| at.elapsed() < REUSE_FOR)
            .map(|(_, resolution)| resolution.clone())
    }

    /// Keeps `resolution` of `dependencies`.
    pub(super) fn put(
        &self,
        language: Language,
        dependencies: &Dependencies,
        resolution: &Resolution,
    ) {
        let mut kept = self.kept.lock().expect("not poisoned");
        kept.retain(|_, (at, _)| at.elapsed() < REUSE_FOR);
        if kept.len() >= MAX_KEPT {
            if let Some(oldest) = kept
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
            {
                kept.remove(&oldest);
            }
        }
        kept.insert(
            (language, key(dependencies)),
            (Instant::now(), resolution.clone()),
        );
    }
}

/// The set as canonical JSON (a `BTreeMap`, so in name order).
fn key(dependencies: &Dependencies) -> String {
    serde_json::to_string(dependencies).expect("dependencies serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resolution_is_reused_for_the_same_set_and_language_only() {
        let recent = RecentResolutions::default();
        let set: Dependencies = serde_json::from_str(r#"{"regex": "1"}"#).unwrap();
        let other: Dependencies = serde_json::from_str(r#"{"regex": "1.11"}"#).unwrap();
        let resolution = Resolution {
            lockfile: "lock".to_owned(),
            packages: Vec::new(),
        };
        recent.put(Language::Rust, &set, &resolution);

        assert_eq!(
            recent.get(Language::Rust, &set).map(|r| r.lockfile),
            Some("lock".to_owned())
        );
        assert!(recent.get(Language::Rust, &other).is_none());
        assert!(recent.get(Language::TypeScript, &set).is_none());
    }
}
