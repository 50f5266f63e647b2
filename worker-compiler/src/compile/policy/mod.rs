//! The operator's dependency policy: which crates and npm packages functions
//! may use, the advisories that refuse (or warn about) a resolved version,
//! and patterns no source may contain (docs/dependencies.md).
//!
//! FOUNDATION SKELETON: the interface the build uses; the implementation
//! (the policy file, its reload, the allowlist, advisories, patterns) is
//! being written.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use plat_common::dependencies::Dependencies;
use plat_common::Language;

use super::{CompileFailure, ResolvedPackage};

/// Why a policy file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("reading the dependency policy {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One loaded policy.
#[derive(Debug, Default)]
pub struct DependencyPolicy {}

impl DependencyPolicy {
    /// Refuses a source holding a forbidden pattern.
    pub fn scan_source(&self, _language: Language, _source: &str) -> Result<(), CompileFailure> {
        Ok(())
    }

    /// Refuses a dependency outside the allowlist, by name and features.
    pub fn check_declared(
        &self,
        _language: Language,
        _dependencies: &Dependencies,
    ) -> Result<(), CompileFailure> {
        Ok(())
    }

    /// Refuses a resolved version the allowlist does not allow or an
    /// advisory names (or returns the advisories as warnings, by policy).
    pub fn check_resolved(
        &self,
        _language: Language,
        _dependencies: &Dependencies,
        _packages: &[ResolvedPackage],
    ) -> Result<Vec<String>, CompileFailure> {
        Ok(Vec::new())
    }
}

/// The policy in force: the file at `path` (re-read when it changes), or the
/// built-in default.
#[derive(Debug)]
pub struct PolicySource {
    path: Option<PathBuf>,
    current: Arc<DependencyPolicy>,
}

impl PolicySource {
    /// Loads the policy at `path` (the built-in one when `None`).
    pub fn new(path: Option<&Path>) -> Result<Self, PolicyError> {
        Ok(Self {
            path: path.map(Path::to_path_buf),
            current: Arc::new(DependencyPolicy::default()),
        })
    }

    /// The policy for the next build.
    pub fn current(&self) -> Arc<DependencyPolicy> {
        let _ = &self.path;
        self.current.clone()
    }
}
