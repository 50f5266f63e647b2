//! The policy file: its TOML shape (every key documented in
//! `worker-compiler/dependency-policy.toml` and docs/dependencies.md) and
//! the checked [`Rules`] it turns into.
//!
//! Every value is checked while it is read (a version requirement parses, a
//! pattern compiles), so a mistake is reported by `toml` with the line and
//! column of the value, and unknown keys are refused the same way: a typo in
//! a policy must not silently allow or skip anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// The built-in policy, also the documented template an operator copies.
pub(super) const BUILT_IN: &str = include_str!("../../../dependency-policy.toml");

/// A policy file, checked; advisory database paths are absolute (or as
/// given, for the built-in policy).
#[derive(Debug, Clone)]
pub(super) struct Rules {
    /// Allowed crates by name.
    pub crates: BTreeMap<String, CrateRule>,
    /// Allowed npm packages by name.
    pub npm: BTreeMap<String, NpmRule>,
    pub advisories: AdvisoryRules,
    pub forbidden: ForbiddenPatterns,
}

/// What the allowlist allows of one crate.
#[derive(Debug, Clone)]
pub(super) struct CrateRule {
    /// A resolved version must match one of these.
    pub versions: Vec<CargoRequirement>,
    pub features: FeatureRule,
}

/// Which features a function may turn on (its defaults are always allowed,
/// and turning them off is too: that only removes code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FeatureRule {
    /// `features = ["*"]`.
    Any,
    /// Only these (none when empty).
    Only(BTreeSet<String>),
}

impl FeatureRule {
    pub(super) fn allows(&self, feature: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Only(allowed) => allowed.contains(feature),
        }
    }
}

/// What the allowlist allows of one npm package.
#[derive(Debug, Clone)]
pub(super) struct NpmRule {
    /// A resolved version must satisfy one of these.
    pub versions: Vec<NpmRange>,
}

/// The `[advisories]` section.
#[derive(Debug, Clone, Default)]
pub(super) struct AdvisoryRules {
    /// OSV files or directories of them.
    pub db_paths: Vec<PathBuf>,
    pub action: AdvisoryAction,
    /// Ignored advisory ids (or aliases) with the operator's reason.
    pub ignore: BTreeMap<String, String>,
}

/// What an advisory matching a resolved package does to the build.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum AdvisoryAction {
    /// The build fails with the advisories listed.
    #[default]
    Deny,
    /// The build goes on; the advisories become its build warnings.
    Warn,
}

/// The `[forbidden]` section: per language, in file order.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ForbiddenPatterns {
    #[serde(default)]
    pub rust: Vec<ForbiddenPattern>,
    #[serde(default)]
    pub typescript: Vec<ForbiddenPattern>,
}

/// One pattern no source may hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ForbiddenPattern {
    pub pattern: PatternRegex,
    /// Shown to the user: why it is forbidden, what to do instead.
    pub message: String,
}

/// A compiled `pattern`.
#[derive(Debug, Clone)]
pub(super) struct PatternRegex(pub Regex);

impl<'de> Deserialize<'de> for PatternRegex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        // `(?m)` so `^` and `$` mean a line's start and end, as an operator
        // writing a pattern for source code expects.
        regex::RegexBuilder::new(&text)
            .multi_line(true)
            .build()
            .map(Self)
            .map_err(|error| de::Error::custom(format!("`{text}` is not a valid regex: {error}")))
    }
}

/// A Cargo version requirement, kept with its text for messages.
#[derive(Debug, Clone)]
pub(super) struct CargoRequirement {
    pub text: String,
    pub requirement: semver::VersionReq,
}

impl CargoRequirement {
    fn parse<E: de::Error>(text: &str) -> Result<Self, E> {
        semver::VersionReq::parse(text)
            .map(|requirement| Self {
                text: text.to_owned(),
                requirement,
            })
            .map_err(|error| {
                E::custom(format!(
                    "`{text}` is not a Cargo version requirement: {error}"
                ))
            })
    }
}

/// An npm version range, kept with its text for messages.
#[derive(Debug, Clone)]
pub(super) struct NpmRange {
    pub text: String,
    pub range: nodejs_semver::Range,
}

impl NpmRange {
    fn parse<E: de::Error>(text: &str) -> Result<Self, E> {
        nodejs_semver::Range::parse(text)
            .map(|range| Self {
                text: text.to_owned(),
                range,
            })
            .map_err(|error| E::custom(format!("`{text}` is not an npm version range: {error}")))
    }
}

/// Reads a policy file's text; relative advisory paths are taken from
/// `base` (the folder holding the file).
pub(super) fn parse(text: &str, base: Option<&Path>) -> Result<Rules, toml::de::Error> {
    let file: PolicyFile = toml::from_str(text)?;
    let resolve = |path: PathBuf| match base {
        Some(base) if path.is_relative() => base.join(path),
        _ => path,
    };
    Ok(Rules {
        crates: file
            .crates
            .into_iter()
            .map(|(name, entry)| (name, entry.0))
            .collect(),
        npm: file
            .npm
            .into_iter()
            .map(|(name, entry)| (name, entry.0))
            .collect(),
        advisories: AdvisoryRules {
            db_paths: file.advisories.db_paths.into_iter().map(resolve).collect(),
            action: file.advisories.action,
            ignore: file
                .advisories
                .ignore
                .into_iter()
                .map(|ignored| (ignored.id, ignored.reason))
                .collect(),
        },
        forbidden: file.forbidden,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    crates: BTreeMap<String, CrateEntry>,
    #[serde(default)]
    npm: BTreeMap<String, NpmEntry>,
    #[serde(default)]
    advisories: AdvisoriesSection,
    #[serde(default)]
    forbidden: ForbiddenPatterns,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct AdvisoriesSection {
    #[serde(default)]
    db_paths: Vec<PathBuf>,
    #[serde(default)]
    action: AdvisoryAction,
    #[serde(default)]
    ignore: Vec<IgnoredAdvisory>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IgnoredAdvisory {
    id: String,
    /// Required: an ignored advisory needs a recorded why.
    reason: String,
}

/// `name = "1"` or `name = { versions = ["1"], features = ["serde"] }`.
struct CrateEntry(CrateRule);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CrateTable {
    versions: Vec<String>,
    #[serde(default)]
    features: Vec<String>,
}

impl<'de> Deserialize<'de> for CrateEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = CrateEntry;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a version requirement (\"1\") or a table { versions = [\"1\"], features = [\"serde\"] }",
                )
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<CrateEntry, E> {
                Ok(CrateEntry(CrateRule {
                    versions: vec![CargoRequirement::parse(text)?],
                    features: FeatureRule::Only(BTreeSet::new()),
                }))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<CrateEntry, A::Error> {
                let table = CrateTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let versions = requirements(&table.versions, CargoRequirement::parse)?;
                let features = if table.features.iter().any(|f| f == "*") {
                    if table.features.len() > 1 {
                        return Err(de::Error::custom(
                            "`features = [\"*\"]` allows any feature; list no others with it",
                        ));
                    }
                    FeatureRule::Any
                } else {
                    FeatureRule::Only(table.features.into_iter().collect())
                };
                Ok(CrateEntry(CrateRule { versions, features }))
            }
        }
        deserializer.deserialize_any(EntryVisitor)
    }
}

/// `name = "^3"` or `name = { versions = ["^3", "^4"] }`.
struct NpmEntry(NpmRule);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NpmTable {
    versions: Vec<String>,
}

impl<'de> Deserialize<'de> for NpmEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = NpmEntry;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an npm version range (\"^3\") or a table { versions = [\"^3\"] }")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<NpmEntry, E> {
                Ok(NpmEntry(NpmRule {
                    versions: vec![NpmRange::parse(text)?],
                }))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<NpmEntry, A::Error> {
                let table = NpmTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let versions = requirements(&table.versions, NpmRange::parse)?;
                Ok(NpmEntry(NpmRule { versions }))
            }
        }
        deserializer.deserialize_any(EntryVisitor)
    }
}

/// Parses a non-empty list of requirements.
fn requirements<T, E: de::Error>(
    texts: &[String],
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Vec<T>, E> {
    if texts.is_empty() {
        // An empty list would allow the name and no version of it: surely
        // a mistake, and one that shows only at the first build.
        return Err(E::custom("`versions` must list at least one requirement"));
    }
    texts.iter().map(|text| parse(text)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        parse(text, None)
            .expect_err("the policy should not parse")
            .to_string()
    }

    #[test]
    fn the_built_in_policy_parses_and_allows_the_common_crates_and_packages() {
        let rules = parse(BUILT_IN, None).expect("the built-in policy parses");
        for name in ["serde", "serde_json", "regex", "uuid", "chrono", "smallvec"] {
            assert!(rules.crates.contains_key(name), "{name}");
        }
        for name in ["zod", "date-fns", "lodash-es", "nanoid"] {
            assert!(rules.npm.contains_key(name), "{name}");
        }
        assert!(rules.crates["uuid"].features.allows("v4"));
        assert!(!rules.crates["uuid"].features.allows("js"));
        assert!(rules.advisories.db_paths.is_empty());
        assert_eq!(rules.advisories.action, AdvisoryAction::Deny);
    }

    #[test]
    fn a_good_file_reads_every_section() {
        let rules = parse(
            r#"
[crates]
itoa = "1"
uuid = { versions = ["1.10", "1.11"], features = ["v4", "serde"] }
regex = { versions = ["1"], features = ["*"] }

[npm]
zod = "^3.23"
"date-fns" = { versions = ["^3", "^4"] }

[advisories]
db-paths = ["osv", "/srv/osv/npm"]
action = "warn"
ignore = [{ id = "RUSTSEC-2021-0003", reason = "we never call insert_many" }]

[[forbidden.rust]]
pattern = 'std::process'
message = "functions may not start processes"
"#,
            Some(Path::new("/etc/plat")),
        )
        .expect("parses");
        assert_eq!(rules.crates["itoa"].versions[0].text, "1");
        assert_eq!(
            rules.crates["itoa"].features,
            FeatureRule::Only(BTreeSet::new())
        );
        assert_eq!(rules.crates["uuid"].versions.len(), 2);
        assert!(rules.crates["uuid"].features.allows("serde"));
        assert_eq!(rules.crates["regex"].features, FeatureRule::Any);
        assert_eq!(rules.npm["date-fns"].versions[1].text, "^4");
        assert_eq!(
            rules.advisories.db_paths,
            [
                PathBuf::from("/etc/plat/osv"),
                PathBuf::from("/srv/osv/npm")
            ]
        );
        assert_eq!(rules.advisories.action, AdvisoryAction::Warn);
        assert_eq!(
            rules.advisories.ignore["RUSTSEC-2021-0003"],
            "we never call insert_many"
        );
        assert_eq!(rules.forbidden.rust.len(), 1);
        assert!(rules.forbidden.typescript.is_empty());
    }

    #[test]
    fn an_unknown_key_is_reported_with_its_line() {
        let error = error_of("[crates]\nitoa = \"1\"\n\n[advisory]\naction = \"deny\"\n");
        assert!(error.contains("line 4"), "{error}");
        assert!(error.contains("unknown field `advisory`"), "{error}");

        let error = error_of("[crates]\nuuid = { versions = [\"1\"], feature = [\"v4\"] }\n");
        assert!(error.contains("line 2"), "{error}");
        assert!(error.contains("unknown field `feature`"), "{error}");

        let error = error_of("[advisories]\nignore = [{ id = \"RUSTSEC-2021-0003\" }]\n");
        assert!(error.contains("line 2"), "{error}");
        assert!(error.contains("missing field `reason`"), "{error}");
    }

    #[test]
    fn a_bad_value_is_reported_with_its_line_and_why() {
        let error = error_of("[crates]\nitoa = \"1\"\nuuid = \"one\"\n");
        assert!(error.contains("line 3"), "{error}");
        assert!(
            error.contains("`one` is not a Cargo version requirement"),
            "{error}"
        );

        let error = error_of("[npm]\nzod = { versions = [\"^3\", \"not a range\"] }\n");
        assert!(error.contains("line 2"), "{error}");
        assert!(error.contains("is not an npm version range"), "{error}");

        let error = error_of("[npm]\nzod = { versions = [] }\n");
        assert!(error.contains("at least one requirement"), "{error}");

        let error =
            error_of("[crates]\nregex = { versions = [\"1\"], features = [\"*\", \"std\"] }\n");
        assert!(error.contains("list no others"), "{error}");

        let error = error_of("[advisories]\naction = \"block\"\n");
        assert!(error.contains("line 2"), "{error}");
        assert!(error.contains("deny") && error.contains("warn"), "{error}");

        let error = error_of(
            "[[forbidden.typescript]]\nmessage = \"no\"\n\n[[forbidden.typescript]]\npattern = 'eval('\nmessage = \"no eval\"\n",
        );
        assert!(error.contains("missing field `pattern`"), "{error}");
        let error =
            error_of("[[forbidden.typescript]]\npattern = 'eval('\nmessage = \"no eval\"\n");
        assert!(error.contains("line 2"), "{error}");
        assert!(error.contains("`eval(` is not a valid regex"), "{error}");

        let error = error_of("[forbidden]\npython = []\n");
        assert!(error.contains("unknown field `python`"), "{error}");
    }
}
