//! The allowlist: which crates and npm packages a function may declare,
//! with which features, and at which resolved versions.

use std::collections::BTreeMap;

use plat_common::dependencies::Dependencies;
use plat_common::Language;

use super::file::Rules;
use super::{Refusal, RefusalReason};
use crate::compile::ResolvedPackage;

/// How an operator widens the allowlist, ending every refusal so the user
/// knows whom to ask and the operator what to edit.
const HOW_TO_ALLOW: &str =
    "the operator allows more in the dependency policy file (PLAT_DEPENDENCY_POLICY; docs/dependencies.md)";

/// Up to this many allowed names are listed in full; past it, the closest.
const LIST_ALL_UP_TO: usize = 40;
/// How many of the closest names a long allowlist shows.
const CLOSEST: usize = 5;

/// The refusals of `dependencies` by name and features, in name order.
pub(super) fn check_declared(
    rules: &Rules,
    language: Language,
    dependencies: &Dependencies,
) -> Vec<Refusal> {
    let mut refusals = Vec::new();
    for (name, spec) in dependencies {
        match language {
            Language::Rust => {
                let Some(rule) = rules.crates.get(name) else {
                    refusals.push(not_allowed(name, "crates", &rules.crates));
                    continue;
                };
                for feature in spec.features() {
                    if !rule.features.allows(feature) {
                        refusals.push(Refusal {
                            reason: RefusalReason::FeatureNotAllowed,
                            message: format!(
                                "dependency `{name}`: feature `{feature}` is not allowed by the operator's \
                                 allowlist for crates (allowed features of {name}: {}); {HOW_TO_ALLOW}",
                                allowed_features(&rule.features)
                            ),
                        });
                    }
                }
            }
            Language::TypeScript => {
                if !rules.npm.contains_key(name) {
                    refusals.push(not_allowed(name, "npm packages", &rules.npm));
                }
            }
        }
    }
    refusals
}

/// The refusals of direct dependencies resolved to a version their
/// allowlist entry does not allow.
pub(super) fn check_versions(
    rules: &Rules,
    language: Language,
    dependencies: &Dependencies,
    packages: &[ResolvedPackage],
) -> Vec<Refusal> {
    packages
        .iter()
        .filter(|package| package.direct && dependencies.contains_key(&package.name))
        .filter_map(|package| {
            let (allowed, texts) = match language {
                Language::Rust => {
                    let rule = rules.crates.get(&package.name)?;
                    let allowed = semver::Version::parse(&package.version).is_ok_and(|version| {
                        rule.versions
                            .iter()
                            .any(|req| req.requirement.matches(&version))
                    });
                    (
                        allowed,
                        rule.versions
                            .iter()
                            .map(|r| r.text.as_str())
                            .collect::<Vec<_>>(),
                    )
                }
                Language::TypeScript => {
                    let rule = rules.npm.get(&package.name)?;
                    let allowed =
                        nodejs_semver::Version::parse(&package.version).is_ok_and(|version| {
                            rule.versions
                                .iter()
                                .any(|req| req.range.satisfies(&version))
                        });
                    (
                        allowed,
                        rule.versions.iter().map(|r| r.text.as_str()).collect(),
                    )
                }
            };
            (!allowed).then(|| Refusal {
                reason: RefusalReason::VersionNotAllowed,
                message: format!(
                    "dependency `{}` resolved to {}, which the operator's allowlist does not allow \
                     (allowed: {}); ask for a version within it, or {HOW_TO_ALLOW}",
                    package.name,
                    package.version,
                    texts
                        .iter()
                        .map(|text| format!("`{text}`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            })
        })
        .collect()
}

fn not_allowed<T>(name: &str, kind: &str, allowed: &BTreeMap<String, T>) -> Refusal {
    let listed = if allowed.is_empty() {
        format!("it allows no {kind}")
    } else if allowed.len() <= LIST_ALL_UP_TO {
        format!(
            "allowed {kind}: {}",
            allowed
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        format!(
            "the closest of its {} allowed {kind}: {}",
            allowed.len(),
            closest(name, allowed.keys().map(String::as_str)).join(", ")
        )
    };
    Refusal {
        reason: RefusalReason::NotAllowed,
        message: format!(
            "dependency `{name}` is not on the operator's allowlist for {kind} ({listed}); {HOW_TO_ALLOW}"
        ),
    }
}

fn allowed_features(rule: &super::file::FeatureRule) -> String {
    match rule {
        super::file::FeatureRule::Any => "any".to_owned(),
        super::file::FeatureRule::Only(features) if features.is_empty() => {
            "only its default features".to_owned()
        }
        super::file::FeatureRule::Only(features) => features
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The [`CLOSEST`] names nearest to `name` by edit distance (ties by name).
fn closest<'a>(name: &str, names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut scored: Vec<(usize, &str)> = names
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(CLOSEST)
        .map(|(_, candidate)| candidate)
        .collect()
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, b) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(a != *b);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::policy::file::{self, BUILT_IN};

    fn deps(json: &str) -> Dependencies {
        serde_json::from_str(json).expect("dependencies")
    }

    fn package(name: &str, version: &str, direct: bool) -> ResolvedPackage {
        ResolvedPackage {
            name: name.into(),
            version: version.into(),
            direct,
        }
    }

    #[test]
    fn a_crate_off_the_allowlist_is_refused_with_the_allowed_names() {
        let rules = file::parse(BUILT_IN, None).unwrap();

        let refusals = check_declared(
            &rules,
            Language::Rust,
            &deps(r#"{"left-pad-rs": "1", "serde": "1"}"#),
        );

        assert_eq!(refusals.len(), 1, "{refusals:?}");
        let message = &refusals[0].message;
        assert_eq!(refusals[0].reason, RefusalReason::NotAllowed);
        assert!(
            message.starts_with(
                "dependency `left-pad-rs` is not on the operator's allowlist for crates"
            ),
            "{message}"
        );
        assert!(
            message.contains("allowed crates: anyhow, base64,"),
            "{message}"
        );
        assert!(message.contains("PLAT_DEPENDENCY_POLICY"), "{message}");
    }

    #[test]
    fn an_npm_package_off_a_long_allowlist_shows_the_closest_names() {
        let mut text = String::from("[npm]\n");
        for i in 0..50 {
            text.push_str(&format!("pkg-{i:02} = \"1\"\n"));
        }
        text.push_str("lodash-es = \"^4.17\"\n");
        let rules = file::parse(&text, None).unwrap();

        let refusals = check_declared(&rules, Language::TypeScript, &deps(r#"{"lodash": "^4"}"#));

        let message = &refusals[0].message;
        assert!(
            message.contains("not on the operator's allowlist for npm packages"),
            "{message}"
        );
        assert!(
            message.contains("the closest of its 51 allowed npm packages: lodash-es,"),
            "{message}"
        );
        assert!(
            check_declared(&rules, Language::TypeScript, &deps(r#"{"pkg-07": "1"}"#)).is_empty()
        );
        // Crates and npm packages are separate lists.
        assert_eq!(
            check_declared(&rules, Language::Rust, &deps(r#"{"pkg-07": "1"}"#)).len(),
            1
        );
    }

    #[test]
    fn a_feature_not_allowed_is_refused_by_name() {
        let rules = file::parse(
            "[crates]\nuuid = { versions = [\"1\"], features = [\"v4\", \"serde\"] }\nitoa = \"1\"\nregex = { versions = [\"1\"], features = [\"*\"] }\n",
            None,
        )
        .unwrap();

        let refusals = check_declared(
            &rules,
            Language::Rust,
            &deps(
                r#"{"uuid": {"version": "1", "features": ["v4", "js"], "defaultFeatures": false},
                    "itoa": {"version": "1", "features": ["no-panic"]},
                    "regex": {"version": "1", "features": ["unicode", "perf"]}}"#,
            ),
        );

        let messages: Vec<&str> = refusals.iter().map(|r| r.message.as_str()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].starts_with("dependency `itoa`: feature `no-panic` is not allowed"));
        assert!(
            messages[0].contains("only its default features"),
            "{}",
            messages[0]
        );
        assert!(messages[1].starts_with("dependency `uuid`: feature `js` is not allowed"));
        assert!(
            messages[1].contains("(allowed features of uuid: serde, v4)"),
            "{}",
            messages[1]
        );
        assert!(refusals
            .iter()
            .all(|r| r.reason == RefusalReason::FeatureNotAllowed));
    }

    #[test]
    fn a_direct_dependency_resolved_outside_its_requirements_is_refused() {
        let rules = file::parse(
            "[crates]\nsmallvec = { versions = [\"1.6\", \"1.13\"] }\n[npm]\nzod = { versions = [\"^3.22\", \"^4\"] }\n",
            None,
        )
        .unwrap();
        let rust = deps(r#"{"smallvec": "1"}"#);

        let refused = check_versions(
            &rules,
            Language::Rust,
            &rust,
            &[
                package("smallvec", "1.5.0", true),
                package("smallvec", "0.6.1", false),
            ],
        );
        assert_eq!(
            refused.len(),
            1,
            "the transitive 0.6.1 is not checked: {refused:?}"
        );
        assert_eq!(
            refused[0].message,
            "dependency `smallvec` resolved to 1.5.0, which the operator's allowlist does not allow \
             (allowed: `1.6` or `1.13`); ask for a version within it, or the operator allows more in \
             the dependency policy file (PLAT_DEPENDENCY_POLICY; docs/dependencies.md)"
        );
        assert!(check_versions(
            &rules,
            Language::Rust,
            &rust,
            &[package("smallvec", "1.13.2", true)]
        )
        .is_empty());

        let ts = deps(r#"{"zod": "^3"}"#);
        assert!(check_versions(
            &rules,
            Language::TypeScript,
            &ts,
            &[package("zod", "3.23.8", true)]
        )
        .is_empty());
        assert!(check_versions(
            &rules,
            Language::TypeScript,
            &ts,
            &[package("zod", "4.1.0", true)]
        )
        .is_empty());
        let refused = check_versions(
            &rules,
            Language::TypeScript,
            &ts,
            &[package("zod", "3.21.4", true)],
        );
        assert_eq!(refused[0].reason, RefusalReason::VersionNotAllowed);
        assert!(
            refused[0].message.contains("resolved to 3.21.4"),
            "{}",
            refused[0].message
        );
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("lodash", "lodash-es"), 3);
        assert_eq!(edit_distance("serde", "serde"), 0);
        assert_eq!(edit_distance("sha2", "sha1"), 1);
        assert_eq!(
            closest("sha", ["hex", "sha1", "sha2", "zod"].into_iter())[..2],
            ["sha1", "sha2"]
        );
    }
}
