//! What a function declares it depends on: crates for Rust, npm packages
//! for TypeScript (docs/dependencies.md).
//!
//! The API checks only the shape here (names, requirements, features), so a
//! typo is a 400 at once; whether a dependency is allowed, and at which
//! versions, is the operator's allowlist, which the compiler applies (its
//! refusal is a compileError naming the dependency and the allowlist).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Language;

/// Most dependencies one function may declare.
pub const MAX_DEPENDENCIES: usize = 32;
/// Longest version requirement accepted.
const MAX_REQUIREMENT_CHARS: usize = 100;
/// Most features one crate dependency may ask for.
const MAX_FEATURES: usize = 32;
/// Longest crate, npm package or feature name (npm allows 214).
const MAX_NAME_CHARS: usize = 214;

/// A function's dependencies: name → what it asks for, in name order (so
/// two equal sets compare and hash equal).
pub type Dependencies = BTreeMap<String, DependencySpec>;

/// One dependency, in Cargo's two spellings: `"1"` or
/// `{"version": "0.4", "features": ["serde"], "defaultFeatures": false}`.
/// npm packages take only the first (or `{"version"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum DependencySpec {
    /// A version requirement alone.
    Version(String),
    /// A requirement with features.
    Detailed(DetailedSpec),
}

/// The table form of a [`DependencySpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DetailedSpec {
    /// A version requirement (Cargo's syntax for crates, npm's for packages).
    pub version: String,
    /// Cargo features to turn on (crates only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    /// Whether the crate's default features are on (crates only).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub default_features: bool,
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

impl DependencySpec {
    /// The version requirement.
    pub fn version(&self) -> &str {
        match self {
            Self::Version(version) => version,
            Self::Detailed(detailed) => &detailed.version,
        }
    }

    /// The features asked for (none for the short form).
    pub fn features(&self) -> &[String] {
        match self {
            Self::Version(_) => &[],
            Self::Detailed(detailed) => &detailed.features,
        }
    }

    /// Whether the default features are on.
    pub fn default_features(&self) -> bool {
        match self {
            Self::Version(_) => true,
            Self::Detailed(detailed) => detailed.default_features,
        }
    }
}

/// Checks the shape of `dependencies` for a function in `language`; the
/// message names the dependency and the rule.
pub fn check(language: Language, dependencies: &Dependencies) -> Result<(), String> {
    if dependencies.len() > MAX_DEPENDENCIES {
        return Err(format!(
            "`dependencies` has {} entries; the limit is {MAX_DEPENDENCIES}",
            dependencies.len()
        ));
    }
    for (name, spec) in dependencies {
        match language {
            Language::Rust => check_crate(name, spec)?,
            Language::TypeScript => check_package(name, spec)?,
        }
        let requirement = spec.version();
        if requirement.trim().is_empty() || requirement.chars().count() > MAX_REQUIREMENT_CHARS {
            return Err(format!(
                "dependency `{name}`: the version requirement must be 1 to {MAX_REQUIREMENT_CHARS} characters"
            ));
        }
        if requirement.chars().any(char::is_control) {
            return Err(format!(
                "dependency `{name}`: the version requirement has a control character"
            ));
        }
    }
    Ok(())
}

fn check_crate(name: &str, spec: &DependencySpec) -> Result<(), String> {
    // crates.io's rule: ASCII letters, digits, `-` and `_`, starting with a letter.
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(format!(
            "dependency `{name}` is not a crate name (ASCII letters, digits, `-` and `_`, starting with a letter, at most 64)"
        ));
    }
    if let Err(error) = semver::VersionReq::parse(spec.version()) {
        return Err(format!(
            "dependency `{name}`: `{}` is not a Cargo version requirement: {error}",
            spec.version()
        ));
    }
    let features = spec.features();
    if features.len() > MAX_FEATURES {
        return Err(format!(
            "dependency `{name}` asks for {} features; the limit is {MAX_FEATURES}",
            features.len()
        ));
    }
    for feature in features {
        let valid = !feature.is_empty()
            && feature.len() <= MAX_NAME_CHARS
            && feature
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '.'));
        if !valid {
            return Err(format!(
                "dependency `{name}`: `{feature}` is not a feature name"
            ));
        }
    }
    Ok(())
}

fn check_package(name: &str, spec: &DependencySpec) -> Result<(), String> {
    // npm's rule for new packages: lower case, URL-safe, optionally scoped.
    let unscoped = match name.strip_prefix('@') {
        Some(scoped) => match scoped.split_once('/') {
            Some((scope, rest)) if is_npm_part(scope) => rest,
            _ => "",
        },
        None => name,
    };
    if name.len() > MAX_NAME_CHARS || !is_npm_part(unscoped) || unscoped.starts_with(['.', '_']) {
        return Err(format!(
            "dependency `{name}` is not an npm package name (lower case letters, digits, `-`, `.`, `_`, `~`, optionally `@scope/`)"
        ));
    }
    if !spec.features().is_empty() || !spec.default_features() {
        return Err(format!(
            "dependency `{name}`: `features` and `defaultFeatures` are for Rust crates; an npm package takes only a version"
        ));
    }
    Ok(())
}

fn is_npm_part(part: &str) -> bool {
    !part.is_empty()
        && part.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_' | '~')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Dependencies {
        serde_json::from_str(json).expect("valid dependencies")
    }

    #[test]
    fn both_spellings_parse_and_the_short_one_round_trips() {
        let deps = parse(
            r#"{"regex": "1", "chrono": {"version": "0.4", "features": ["serde"], "defaultFeatures": false}}"#,
        );
        assert_eq!(deps["regex"], DependencySpec::Version("1".into()));
        assert_eq!(deps["chrono"].features(), ["serde"]);
        assert!(!deps["chrono"].default_features());
        assert_eq!(
            serde_json::to_value(&deps).unwrap(),
            serde_json::json!({"chrono": {"version": "0.4", "features": ["serde"], "defaultFeatures": false}, "regex": "1"})
        );
    }

    #[test]
    fn bad_names_requirements_and_features_are_refused_by_name() {
        let rust = |json| check(Language::Rust, &parse(json));
        assert!(rust(r#"{"regex": "1", "sha2": "0.10.8"}"#).is_ok());
        assert!(rust(r#"{"../etc": "1"}"#).unwrap_err().contains("`../etc`"));
        assert!(rust(r#"{"regex": "one"}"#)
            .unwrap_err()
            .contains("not a Cargo version requirement"));
        assert!(rust(r#"{"regex": {"version": "1", "features": ["a b"]}}"#)
            .unwrap_err()
            .contains("`a b`"));

        let ts = |json| check(Language::TypeScript, &parse(json));
        assert!(ts(r#"{"zod": "^3.23.8", "@scope/pkg": "1.x", "date-fns": ">=3 <4"}"#).is_ok());
        assert!(ts(r#"{"Zod": "3"}"#)
            .unwrap_err()
            .contains("npm package name"));
        assert!(ts(r#"{"zod": {"version": "3", "features": ["x"]}}"#)
            .unwrap_err()
            .contains("Rust crates"));
    }
}
