//! npm packages end to end against the real registry: resolution to a
//! lockfile, integrity checks, bundling with rolldown and the engine's
//! compile. Each test has its own package store, so none sees another's
//! downloads unless it says so.

use std::collections::BTreeMap;

use plat_common::dependencies::{Dependencies, DependencySpec};
use tokio::sync::OnceCell;

use super::packages::{Lockfile, NpmSettings};
use super::TypeScriptToolchain;
use crate::compile::{CompileFailure, Resolution};

static TOOLCHAIN: OnceCell<TypeScriptToolchain> = OnceCell::const_new();
static STORE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();

/// One toolchain for the tests that share a store (the engine takes a
/// second or so to prepare).
async fn toolchain() -> &'static TypeScriptToolchain {
    TOOLCHAIN
        .get_or_init(|| async {
            let store = STORE.get_or_init(|| tempfile::tempdir().expect("a temporary folder"));
            fresh_toolchain(store.path()).await
        })
        .await
}

async fn fresh_toolchain(store: &std::path::Path) -> TypeScriptToolchain {
    let mut toolchain = TypeScriptToolchain::prepare()
        .await
        .expect("preparing the TypeScript toolchain");
    toolchain.set_npm(&NpmSettings {
        store: store.to_path_buf(),
        ..NpmSettings::default()
    });
    toolchain
}

fn dependencies(pairs: &[(&str, &str)]) -> Dependencies {
    pairs
        .iter()
        .map(|(name, range)| {
            (
                (*name).to_owned(),
                DependencySpec::Version((*range).to_owned()),
            )
        })
        .collect()
}

fn user_error<T: std::fmt::Debug>(result: Result<T, CompileFailure>) -> String {
    match result {
        Err(CompileFailure::User(message)) => message,
        other => panic!("expected a user error, got {other:?}"),
    }
}

const ZOD_HANDLER: &str = r#"import { z } from "zod";

const Input = z.object({ name: z.string().min(1) });

export default (input: unknown) => {
  const { name } = Input.parse(input);
  return { greeting: `Hello, ${name}!` };
};
"#;

#[tokio::test]
async fn zod_resolves_to_a_lockfile_with_exact_versions_and_sha512_integrity() {
    let resolution = toolchain()
        .await
        .resolve(&dependencies(&[("zod", "^3.23.8")]), None)
        .await
        .expect("resolves");

    let lock = Lockfile::parse(&resolution.lockfile).expect("a lockfile this compiler reads");
    let version = &lock.direct["zod"];
    let parsed = nodejs_semver::Version::parse(version).expect("an exact version");
    assert_eq!(parsed.major(), 3);
    assert!(parsed.minor() >= 23, "{version}");
    let zod = &lock.packages[&format!("zod@{version}")];
    assert!(zod.integrity.starts_with("sha512-"), "{}", zod.integrity);
    assert!(zod.resolved.ends_with(".tgz"), "{}", zod.resolved);
    assert_eq!(
        lock.declared,
        BTreeMap::from([("zod".to_owned(), "^3.23.8".to_owned())])
    );
    assert!(resolution
        .packages
        .iter()
        .any(|p| p.name == "zod" && p.version == *version && p.direct));
}

#[tokio::test]
async fn a_lockfile_that_covers_the_dependencies_is_used_as_it_is() {
    let declared = dependencies(&[("ms", "^2.1.0")]);
    let toolchain = toolchain().await;
    // An older `ms` than the registry picks today: kept, not re-resolved.
    let pinned = ms_2_1_1_locked_as(&declared);
    let again = toolchain
        .resolve(&declared, Some(&pinned))
        .await
        .expect("resolves");
    assert_eq!(again.lockfile, pinned);

    // Another range is another resolution.
    let other = toolchain
        .resolve(&dependencies(&[("ms", "2.0.0")]), Some(&pinned))
        .await
        .expect("resolves");
    assert_eq!(
        Lockfile::parse(&other.lockfile).unwrap().direct["ms"],
        "2.0.0"
    );
}

/// A lockfile of `declared` holding `ms@2.1.1`, its real tarball and integrity.
fn ms_2_1_1_locked_as(declared: &Dependencies) -> String {
    let mut lock = Lockfile::parse(
        r#"{"lockfileVersion":1,"declared":{},"direct":{"ms":"2.1.1"},"packages":{"ms@2.1.1":{"name":"ms","version":"2.1.1","resolved":"https://registry.npmjs.org/ms/-/ms-2.1.1.tgz","integrity":"sha512-tgp+dl5cGk28utYktBsrFqA7HKgrhgPsg6Z/EfhWI4gl1Hwq8B/GmY/0oXZ6nF8hDVesS/FpnYaD/kOWhYQvyg=="}}}"#,
    )
    .expect("a valid lockfile");
    lock.declared = declared
        .iter()
        .map(|(name, spec)| (name.clone(), spec.version().to_owned()))
        .collect();
    lock.to_text()
}

#[tokio::test]
async fn a_handler_importing_zod_date_fns_and_lodash_es_builds() {
    let toolchain = toolchain().await;
    let resolution = toolchain
        .resolve(
            &dependencies(&[
                ("zod", "^3.23.8"),
                ("date-fns", "^4.1.0"),
                ("lodash-es", "^4.17.21"),
            ]),
            None,
        )
        .await
        .expect("resolves");
    let source = r#"import { z } from "zod";
import { addDays, formatISO } from "date-fns";
import { chunk } from "lodash-es";

const Input = z.object({ day: z.string(), items: z.array(z.number()) });

export default (input: unknown) => {
  const parsed = Input.parse(input);
  return {
    next: formatISO(addDays(new Date(parsed.day), 1), { representation: "date" }),
    pairs: chunk(parsed.items, 2),
  };
};
"#;
    let built = toolchain
        .compile(source, Some(&resolution))
        .await
        .expect("builds");
    // The packages are in the module (a handler alone is a few hundred bytes).
    assert!(built.module.len() > 20_000, "{} bytes", built.module.len());
}

#[tokio::test]
async fn building_twice_from_one_lockfile_gives_identical_modules() {
    let toolchain = toolchain().await;
    let resolution = toolchain
        .resolve(&dependencies(&[("zod", "^3.23.8")]), None)
        .await
        .expect("resolves");
    let first = toolchain
        .compile(ZOD_HANDLER, Some(&resolution))
        .await
        .expect("builds");
    let second = toolchain
        .compile(ZOD_HANDLER, Some(&resolution))
        .await
        .expect("builds");
    assert_eq!(first.module, second.module);

    // Another worker with its own store builds the same bytes.
    let elsewhere = tempfile::tempdir().expect("a temporary folder");
    let third = fresh_toolchain(elsewhere.path())
        .await
        .compile(ZOD_HANDLER, Some(&resolution))
        .await
        .expect("builds");
    assert_eq!(first.module, third.module);
}

/// `resolution` with the first package's integrity replaced by the digest
/// of other bytes.
fn tampered(resolution: &Resolution) -> Resolution {
    let mut lock = Lockfile::parse(&resolution.lockfile).expect("a lockfile");
    let package = lock.packages.values_mut().next().expect("a package");
    package.integrity = "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==".to_owned();
    Resolution {
        lockfile: lock.to_text(),
        packages: resolution.packages.clone(),
    }
}

#[tokio::test]
async fn a_tarball_that_does_not_match_the_lockfile_integrity_is_refused() {
    let store = tempfile::tempdir().expect("a temporary folder");
    let toolchain = fresh_toolchain(store.path()).await;
    let resolution = toolchain
        .resolve(&dependencies(&[("ms", "^2.1.3")]), None)
        .await
        .expect("resolves");
    let version = Lockfile::parse(&resolution.lockfile).unwrap().direct["ms"].clone();

    // Nothing stored yet: the downloaded tarball is checked and refused.
    let error = user_error(
        toolchain
            .compile(
                "import ms from \"ms\";\nexport default () => ms(1000);\n",
                Some(&tampered(&resolution)),
            )
            .await,
    );
    assert!(error.contains(&format!("`ms@{version}`")), "{error}");
    assert!(error.contains("integrity"), "{error}");
    assert!(!store
        .path()
        .join("packages")
        .join(format!("ms@{version}"))
        .exists());

    // Stored after an honest build: the lockfile's integrity must still match
    // what was verified.
    toolchain
        .compile(
            "import ms from \"ms\";\nexport default () => ms(1000);\n",
            Some(&resolution),
        )
        .await
        .expect("builds");
    let error = user_error(
        toolchain
            .compile(
                "import ms from \"ms\";\nexport default () => ms(1000);\n",
                Some(&tampered(&resolution)),
            )
            .await,
    );
    assert!(error.contains(&format!("`ms@{version}`")), "{error}");
    assert!(error.contains("integrity"), "{error}");
}

#[tokio::test]
async fn a_package_that_needs_a_node_built_in_is_refused_by_name() {
    // mkdirp 1.0.4 is small, has no dependencies and `require`s `fs`,
    // `path` and `util`.
    let toolchain = toolchain().await;
    let resolution = toolchain
        .resolve(&dependencies(&[("mkdirp", "1.0.4")]), None)
        .await
        .expect("resolves");
    let error = user_error(
        toolchain
            .compile(
                "import mkdirp from \"mkdirp\";\nexport default () => typeof mkdirp;\n",
                Some(&resolution),
            )
            .await,
    );
    assert!(
        error.starts_with("package `mkdirp` imports the Node built-in `"),
        "{error}"
    );
    assert!(
        error.ends_with("which Plat's JavaScript runtime does not provide"),
        "{error}"
    );
}

#[tokio::test]
async fn errors_in_a_handler_with_packages_point_at_handler_ts() {
    let toolchain = toolchain().await;
    let resolution = toolchain
        .resolve(&dependencies(&[("zod", "^3.23.8")]), None)
        .await
        .expect("resolves");

    let syntax = "import { z } from \"zod\";\n\nexport default (input: unknown) => {\n  return z.string().parse(input) +;\n};\n";
    let error = user_error(toolchain.compile(syntax, Some(&resolution)).await);
    assert!(error.starts_with("handler.ts:4:"), "{error}");

    let undeclared =
        "import { z } from \"zod\";\nimport ms from \"ms\";\n\nexport default () => z && ms;\n";
    let error = user_error(toolchain.compile(undeclared, Some(&resolution)).await);
    assert!(error.starts_with("handler.ts:2:1"), "{error}");
    assert!(
        error.contains("\"ms\": it is not one of the function's dependencies"),
        "{error}"
    );
}

#[tokio::test]
async fn unknown_packages_and_unmatched_ranges_are_the_users_to_fix() {
    let toolchain = toolchain().await;
    let error = user_error(
        toolchain
            .resolve(
                &dependencies(&[("plat-no-such-package-7f3a9c", "^1.0.0")]),
                None,
            )
            .await,
    );
    assert_eq!(
        error,
        "npm package `plat-no-such-package-7f3a9c` does not exist in the registry"
    );

    let error = user_error(
        toolchain
            .resolve(&dependencies(&[("zod", "^99.0.0")]), None)
            .await,
    );
    assert_eq!(error, "npm package `zod` has no version matching `^99.0.0`");
}
