//! The policy's checks as the build calls them: advisories (OSV matching in
//! both ecosystems, deny and warn, the ignore list), on policies loaded from
//! files like an operator's.

use std::path::Path;

use plat_common::dependencies::Dependencies;
use plat_common::Language;

use super::{DependencyPolicy, PolicySource};
use crate::compile::{CompileFailure, ResolvedPackage};

const SMALLVEC_ADVISORY: &str = include_str!("testdata/RUSTSEC-2021-0003.json");
const LODASH_ADVISORY: &str = include_str!("testdata/GHSA-29mw-wpgm-hmr9.json");

/// A policy in a temporary folder: `policy.toml` and the advisory database
/// `osv/` holding `records` (name → JSON).
struct Fixture {
    _dir: tempfile::TempDir,
    source: PolicySource,
}

impl Fixture {
    fn new(policy: &str, records: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let osv = dir.path().join("osv");
        std::fs::create_dir_all(osv.join("nested")).unwrap();
        for (name, json) in records {
            std::fs::write(osv.join(name), json).unwrap();
        }
        // Not OSV and not *.json: a database checkout holds such files.
        std::fs::write(osv.join("README.md"), "# advisories").unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, policy).unwrap();
        let source = PolicySource::new(Some(&path)).unwrap();
        Self { _dir: dir, source }
    }

    fn policy(&self) -> std::sync::Arc<DependencyPolicy> {
        self.source.current()
    }
}

fn deps(json: &str) -> Dependencies {
    serde_json::from_str(json).unwrap()
}

fn resolved(packages: &[(&str, &str, bool)]) -> Vec<ResolvedPackage> {
    packages
        .iter()
        .map(|(name, version, direct)| ResolvedPackage {
            name: (*name).into(),
            version: (*version).into(),
            direct: *direct,
        })
        .collect()
}

fn user_error(result: Result<Vec<String>, CompileFailure>) -> String {
    match result {
        Err(CompileFailure::User(message)) => message,
        other => panic!("expected a user error, got {other:?}"),
    }
}

const RUST_POLICY: &str = r#"
[crates]
smallvec = "1"
anyhow = "1"

[advisories]
db-paths = ["osv"]
"#;

#[test]
fn a_crate_inside_an_advisorys_range_is_refused_with_the_id_aliases_and_fix() {
    let fixture = Fixture::new(
        RUST_POLICY,
        &[("nested/RUSTSEC-2021-0003.json", SMALLVEC_ADVISORY)],
    );
    let policy = fixture.policy();
    let check = |version: &str, direct: bool| {
        policy.check_resolved(
            Language::Rust,
            &deps(r#"{"anyhow": "1"}"#),
            &resolved(&[("anyhow", "1.0.86", true), ("smallvec", version, direct)]),
        )
    };

    let message = user_error(check("1.6.0", false));

    assert_eq!(
        message,
        "the operator's advisory database names one of the resolved packages; use a version \
         without the advisory (or the operator ignores it in the dependency policy, \
         PLAT_DEPENDENCY_POLICY):\n  RUSTSEC-2021-0003 (CVE-2021-25900, GHSA-43w2-9j62-hq99): \
         smallvec 1.6.0: Buffer overflow in SmallVec::insert_many; fixed in 1.6.1"
    );
    // Both ranges: introduced 0.0.0-0 to fixed 0.6.14, 1.0.0 to 1.6.1.
    assert!(user_error(check("0.6.13", false)).contains("fixed in 0.6.14, 1.6.1"));
    assert!(user_error(check("1.0.0", true)).contains("smallvec 1.0.0"));
    for unaffected in ["0.6.14", "0.6.20", "1.6.1", "1.13.2"] {
        assert_eq!(
            check(unaffected, false).unwrap(),
            Vec::<String>::new(),
            "{unaffected}"
        );
    }
}

#[test]
fn npm_ranges_last_affected_and_other_ecosystems_match_as_osv_says() {
    let fixture = Fixture::new(
        "[npm]\nlodash-es = \"^4\"\n[advisories]\ndb-paths = [\"osv\"]\n",
        &[("GHSA-29mw-wpgm-hmr9.json", LODASH_ADVISORY)],
    );
    let policy = fixture.policy();
    let check = |name: &str, version: &str| {
        policy.check_resolved(
            Language::TypeScript,
            &deps(r#"{"lodash-es": "^4"}"#),
            &resolved(&[("lodash-es", "4.17.21", true), (name, version, false)]),
        )
    };

    let message = user_error(check("lodash-es", "4.17.20"));
    assert!(
        message.contains(
            "GHSA-29mw-wpgm-hmr9 (CVE-2020-28500): lodash-es 4.17.20: Regular Expression Denial \
             of Service (ReDoS) in lodash; fixed in 4.17.21"
        ),
        "{message}"
    );
    assert!(
        check("lodash-es", "3.10.1").unwrap().is_empty(),
        "before introduced"
    );
    assert!(check("lodash", "4.17.4").is_err());
    // last_affected 4.5.1 includes 4.5.1, not what follows; no fix listed.
    let message = user_error(check("lodash.trim", "4.5.1"));
    assert!(message.contains("lodash.trim 4.5.1: Regular Expression Denial of Service (ReDoS) in lodash; no fixed version"), "{message}");
    assert!(check("lodash.trim", "4.5.2").unwrap().is_empty());
    // The RubyGems entry (with its explicit versions) is not npm's.
    assert!(check("lodash-rails", "4.17.15").unwrap().is_empty());
    // A crate of the same name is another ecosystem.
    assert!(policy
        .check_resolved(
            Language::Rust,
            &Dependencies::new(),
            &resolved(&[("lodash", "4.17.4", false)])
        )
        .unwrap()
        .is_empty());
}

#[test]
fn explicit_versions_match_and_withdrawn_advisories_do_not() {
    let listed = r#"{"id": "GHSA-test-list-only", "summary": "Listed versions only",
        "affected": [{"package": {"ecosystem": "npm", "name": "ms"}, "versions": ["2.0.0", "1.0.0"]}]}"#;
    let withdrawn = r#"[{"id": "GHSA-test-withdrawn", "withdrawn": "2024-01-01T00:00:00Z",
        "summary": "Withdrawn", "affected": [{"package": {"ecosystem": "npm", "name": "ms"},
        "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}]}]}]}]"#;
    let fixture = Fixture::new(
        "[npm]\nms = \"^2\"\n[advisories]\ndb-paths = [\"osv\"]\n",
        &[
            ("listed.json", listed),
            ("nested/withdrawn.json", withdrawn),
        ],
    );
    let check = |version: &str| {
        fixture.policy().check_resolved(
            Language::TypeScript,
            &deps(r#"{"ms": "^2"}"#),
            &resolved(&[("ms", version, true)]),
        )
    };

    let message = user_error(check("2.0.0"));
    assert!(
        message.contains("GHSA-test-list-only: ms 2.0.0: Listed versions only; no fixed version"),
        "{message}"
    );
    assert!(!message.contains("GHSA-test-withdrawn"), "{message}");
    assert!(check("2.1.3").unwrap().is_empty());
}

#[test]
fn under_warn_the_matches_are_warnings_and_the_build_goes_on() {
    let fixture = Fixture::new(
        &RUST_POLICY.replace("[advisories]", "[advisories]\naction = \"warn\""),
        &[("RUSTSEC-2021-0003.json", SMALLVEC_ADVISORY)],
    );

    let warnings = fixture
        .policy()
        .check_resolved(
            Language::Rust,
            &deps(r#"{"smallvec": "1"}"#),
            &resolved(&[("smallvec", "1.6.0", true), ("smallvec", "1.6.0", true)]),
        )
        .expect("warn lets the build go on");

    assert_eq!(
        warnings,
        [
            "advisory RUSTSEC-2021-0003 (CVE-2021-25900, GHSA-43w2-9j62-hq99): smallvec 1.6.0: \
          Buffer overflow in SmallVec::insert_many; fixed in 1.6.1"
        ],
        "one warning per package and version"
    );
}

#[test]
fn an_ignored_advisory_is_skipped_by_id_or_alias() {
    for id in ["RUSTSEC-2021-0003", "CVE-2021-25900"] {
        let fixture = Fixture::new(
            &format!(
                "{RUST_POLICY}ignore = [{{ id = \"{id}\", reason = \"insert_many is never called\" }}]\n"
            ),
            &[("RUSTSEC-2021-0003.json", SMALLVEC_ADVISORY)],
        );

        let warnings = fixture
            .policy()
            .check_resolved(
                Language::Rust,
                &deps(r#"{"smallvec": "1"}"#),
                &resolved(&[("smallvec", "1.6.0", true)]),
            )
            .expect("ignored");

        assert!(warnings.is_empty(), "{id}: {warnings:?}");
    }
}

#[test]
fn a_version_outside_the_allowlist_is_refused_before_advisories() {
    let fixture = Fixture::new(
        &RUST_POLICY.replace("smallvec = \"1\"", "smallvec = \"1.13\""),
        &[("RUSTSEC-2021-0003.json", SMALLVEC_ADVISORY)],
    );

    let message = user_error(fixture.policy().check_resolved(
        Language::Rust,
        &deps(r#"{"smallvec": "1"}"#),
        &resolved(&[("smallvec", "1.6.0", true)]),
    ));

    assert!(message.starts_with("dependency `smallvec` resolved to 1.6.0, which the operator's allowlist does not allow (allowed: `1.13`)"), "{message}");
}

#[test]
fn a_database_file_that_is_not_osv_is_named_at_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.json"), r#"{"summary": "no id"}"#).unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, "[advisories]\ndb-paths = [\".\"]\n").unwrap();

    let error = PolicySource::new(Some(Path::new(&path)))
        .unwrap_err()
        .to_string();

    assert!(
        error.contains("bad.json") && error.contains("is not OSV JSON"),
        "{error}"
    );
}

#[test]
fn the_built_in_policy_refuses_what_it_does_not_list_and_scans_nothing() {
    let policy = DependencyPolicy::default();
    assert!(policy
        .check_declared(
            Language::Rust,
            &deps(r#"{"serde": {"version": "1", "features": ["derive"]}}"#)
        )
        .is_ok());
    assert!(policy
        .check_declared(Language::TypeScript, &deps(r#"{"zod": "^3.23.8"}"#))
        .is_ok());
    let message = policy
        .check_declared(Language::Rust, &deps(r#"{"left-pad-rs": "1"}"#))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("`left-pad-rs` is not on the operator's allowlist"),
        "{message}"
    );
    assert!(policy
        .scan_source(Language::Rust, "std::process::exit(1)")
        .is_ok());
}

#[test]
fn scan_source_fails_the_build_with_every_match() {
    let fixture = Fixture::new(
        "[[forbidden.rust]]\npattern = 'std::env'\nmessage = \"no environment\"\n\n\
         [[forbidden.rust]]\npattern = 'std::net'\nmessage = \"no sockets\"\n",
        &[],
    );

    let message = match fixture
        .policy()
        .scan_source(Language::Rust, "use std::net::TcpStream;\nuse std::env;\n")
    {
        Err(CompileFailure::User(message)) => message,
        other => panic!("expected a user error, got {other:?}"),
    };

    let lines: Vec<&str> = message.lines().collect();
    assert!(
        lines[0].starts_with("handler.rs:2:5: error: no environment"),
        "{message}"
    );
    assert!(
        lines[3].starts_with("handler.rs:1:5: error: no sockets"),
        "{message}"
    );
    assert!(fixture
        .policy()
        .scan_source(Language::TypeScript, "import 'std::env'")
        .is_ok());
}
