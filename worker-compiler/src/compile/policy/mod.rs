//! The operator's dependency policy: which crates and npm packages functions
//! may use, the advisories that refuse (or warn about) a resolved version,
//! and patterns no source may contain (docs/dependencies.md).
//!
//! - [`file`]: the policy file's TOML shape and the rules it holds;
//! - [`allowlist`]: names, features and resolved versions against it;
//! - [`advisories`]: the OSV advisory database and its matching;
//! - [`patterns`]: forbidden source patterns, reported at their position;
//! - [`source`]: the policy in force, re-read when its files change.

mod advisories;
mod allowlist;
mod file;
mod patterns;
mod source;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use plat_common::dependencies::Dependencies;
use plat_common::Language;

use super::{CompileFailure, ResolvedPackage};
use advisories::{AdvisoryDb, Ecosystem, Match};
use file::{AdvisoryAction, Rules};
pub use source::PolicySource;

/// Why a policy file (or its advisory database) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A file or directory it names could not be read.
    #[error("reading the dependency policy's {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The policy file is not a valid policy; the message has the line.
    #[error("the dependency policy {} is not valid: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// A file of the advisory database is not OSV JSON.
    #[error("the advisory database file {} is not OSV JSON: {source}", path.display())]
    Advisory {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// One loaded policy: the rules of one version of the file and the advisory
/// database they name.
#[derive(Debug)]
pub struct DependencyPolicy {
    rules: Arc<Rules>,
    advisories: Arc<AdvisoryDb>,
}

/// The built-in policy (`worker-compiler/dependency-policy.toml`).
impl Default for DependencyPolicy {
    fn default() -> Self {
        let rules = file::parse(file::BUILT_IN, None)
            .expect("the built-in dependency policy parses (a unit test checks it)");
        Self {
            rules: Arc::new(rules),
            advisories: Arc::default(),
        }
    }
}

/// Why the policy refused a build, as counted in
/// `plat_dependency_policy_refusals_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefusalReason {
    ForbiddenPattern,
    NotAllowed,
    FeatureNotAllowed,
    VersionNotAllowed,
    Advisory,
}

impl RefusalReason {
    fn label(self) -> &'static str {
        match self {
            Self::ForbiddenPattern => "forbidden_pattern",
            Self::NotAllowed => "not_allowed",
            Self::FeatureNotAllowed => "feature_not_allowed",
            Self::VersionNotAllowed => "version_not_allowed",
            Self::Advisory => "advisory",
        }
    }
}

/// One thing the policy refuses, with the message the user sees.
#[derive(Debug)]
struct Refusal {
    reason: RefusalReason,
    message: String,
}

impl DependencyPolicy {
    /// Refuses a source holding a forbidden pattern: each match is reported
    /// at its line and column, like a compile error.
    pub fn scan_source(&self, language: Language, source: &str) -> Result<(), CompileFailure> {
        let forbidden = match language {
            Language::Rust => &self.rules.forbidden.rust,
            Language::TypeScript => &self.rules.forbidden.typescript,
        };
        refuse(
            patterns::find(language, forbidden, source)
                .into_iter()
                .map(|message| Refusal {
                    reason: RefusalReason::ForbiddenPattern,
                    message,
                })
                .collect(),
        )
    }

    /// Refuses a dependency outside the allowlist, by name and features.
    pub fn check_declared(
        &self,
        language: Language,
        dependencies: &Dependencies,
    ) -> Result<(), CompileFailure> {
        refuse(allowlist::check_declared(
            &self.rules,
            language,
            dependencies,
        ))
    }

    /// Refuses a direct dependency resolved to a version the allowlist does
    /// not allow, then checks every resolved package against the advisory
    /// database: under `deny` a match refuses the build, under `warn` the
    /// matches are returned as warnings.
    pub fn check_resolved(
        &self,
        language: Language,
        dependencies: &Dependencies,
        packages: &[ResolvedPackage],
    ) -> Result<Vec<String>, CompileFailure> {
        refuse(allowlist::check_versions(
            &self.rules,
            language,
            dependencies,
            packages,
        ))?;
        let matches = self.advisory_matches(language, packages);
        if matches.is_empty() {
            return Ok(Vec::new());
        }
        let lines: Vec<String> = matches.iter().map(describe).collect();
        match self.rules.advisories.action {
            AdvisoryAction::Warn => {
                for line in &lines {
                    tracing::info!(advisory = %line, "dependency advisory (warn)");
                }
                metrics::counter!("plat_dependency_policy_advisory_warnings_total")
                    .increment(lines.len() as u64);
                Ok(lines
                    .into_iter()
                    .map(|line| format!("advisory {line}"))
                    .collect())
            }
            AdvisoryAction::Deny => refuse(vec![Refusal {
                reason: RefusalReason::Advisory,
                message: format!(
                    "the operator's advisory database names {} of the resolved packages; use a \
                     version without the advisory (or the operator ignores it in the dependency \
                     policy, PLAT_DEPENDENCY_POLICY):\n{}",
                    if matches.len() == 1 { "one" } else { "some" },
                    lines
                        .iter()
                        .map(|line| format!("  {line}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }])
            .map(|()| Vec::new()),
        }
    }

    /// Every advisory naming a resolved package, less the ignored ones.
    fn advisory_matches<'a>(
        &'a self,
        language: Language,
        packages: &'a [ResolvedPackage],
    ) -> Vec<Match<'a>> {
        let ecosystem = match language {
            Language::Rust => Ecosystem::Crates,
            Language::TypeScript => Ecosystem::Npm,
        };
        let ignore = &self.rules.advisories.ignore;
        let mut seen = BTreeSet::new();
        let mut matches = Vec::new();
        for package in packages {
            if !seen.insert((&package.name, &package.version)) {
                continue;
            }
            for found in self
                .advisories
                .matches(ecosystem, &package.name, &package.version)
            {
                let advisory = found.advisory;
                let ignored = std::iter::once(&advisory.id)
                    .chain(&advisory.aliases)
                    .find_map(|id| ignore.get(id));
                match ignored {
                    Some(reason) => tracing::info!(
                        advisory = %advisory.id,
                        package = %package.name,
                        version = %package.version,
                        %reason,
                        "advisory ignored by the dependency policy"
                    ),
                    None => matches.push(found),
                }
            }
        }
        matches
    }
}

/// `RUSTSEC-2021-0003 (CVE-2021-25900): smallvec 1.6.0: summary; fixed in 1.6.1`.
fn describe(found: &Match<'_>) -> String {
    let advisory = found.advisory;
    let mut line = advisory.id.clone();
    if !advisory.aliases.is_empty() {
        line.push_str(&format!(" ({})", advisory.aliases.join(", ")));
    }
    line.push_str(&format!(": {} {}", found.package, found.version));
    if !advisory.summary.is_empty() {
        line.push_str(&format!(": {}", advisory.summary));
    }
    if found.fixed.is_empty() {
        line.push_str("; no fixed version");
    } else {
        line.push_str(&format!("; fixed in {}", found.fixed.join(", ")));
    }
    line
}

/// Fails the build with every refusal (one per line), logged and counted;
/// passes it when there is none.
fn refuse(refusals: Vec<Refusal>) -> Result<(), CompileFailure> {
    if refusals.is_empty() {
        return Ok(());
    }
    for refusal in &refusals {
        tracing::info!(
            reason = refusal.reason.label(),
            message = %refusal.message,
            "the dependency policy refused a build"
        );
        metrics::counter!(
            "plat_dependency_policy_refusals_total",
            "reason" => refusal.reason.label()
        )
        .increment(1);
    }
    Err(CompileFailure::User(
        refusals
            .into_iter()
            .map(|refusal| refusal.message)
            .collect::<Vec<_>>()
            .join("\n"),
    ))
}
