//! npm packages of a TypeScript function: resolving the declared ranges to a
//! [`Lockfile`] with the registry ([`registry`]), then downloading, checking
//! and unpacking each tarball into a shared store and laying out a
//! `node_modules` tree per lockfile ([`store`]), which the bundler reads.

pub(crate) mod lockfile;
mod registry;
mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;

use plat_common::dependencies::Dependencies;

use self::lockfile::LockedPackage;
pub(crate) use self::lockfile::Lockfile;
use self::store::Store;
use crate::compile::{CompileFailure, InfraError, ResolvedPackage};

/// The public npm registry, unless the operator sets `PLAT_NPM_REGISTRY`.
pub const DEFAULT_NPM_REGISTRY: &str = "https://registry.npmjs.org";

/// Where packages come from and where they are kept.
#[derive(Debug, Clone)]
pub struct NpmSettings {
    /// The registry's base URL (`https://registry.npmjs.org`).
    pub registry: String,
    /// The shared package store (unpacked packages and per-lockfile trees).
    pub store: PathBuf,
}

impl Default for NpmSettings {
    fn default() -> Self {
        Self {
            registry: DEFAULT_NPM_REGISTRY.to_owned(),
            store: std::env::temp_dir().join("plat-npm-store"),
        }
    }
}

/// An npm registry and the HTTP client that talks to it.
pub(crate) struct Registry {
    url: String,
    client: reqwest::Client,
}

/// Tries of one registry request: a transport error or a 5xx is tried
/// again, so a brief hiccup of the registry neither fails a build that would
/// pass a moment later nor costs the job a queue retry (seconds of backoff).
const REQUEST_ATTEMPTS: u32 = 3;

impl Registry {
    /// GETs `url` (with `accept`, when given), trying again after 200 ms and
    /// 800 ms on a transport error or a server error.
    async fn get(&self, url: &str, accept: Option<&str>) -> reqwest::Result<reqwest::Response> {
        let mut delay = std::time::Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let mut request = self.client.get(url);
            if let Some(accept) = accept {
                request = request.header("accept", accept);
            }
            match request.send().await {
                Ok(response)
                    if response.status().is_server_error() && attempt < REQUEST_ATTEMPTS =>
                {
                    tracing::warn!(url, status = %response.status(), attempt, "the npm registry failed; trying again");
                }
                Err(error) if attempt < REQUEST_ATTEMPTS => {
                    tracing::warn!(url, %error, attempt, "could not reach the npm registry; trying again");
                }
                result => return result,
            }
            tokio::time::sleep(delay).await;
            delay *= 4;
            attempt += 1;
        }
    }
}

/// Resolves and installs packages for one toolchain.
pub(crate) struct Packages {
    registry: Registry,
    store: Store,
}

impl std::fmt::Debug for Packages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packages")
            .field("registry", &self.registry.url)
            .finish_non_exhaustive()
    }
}

impl Packages {
    pub(crate) fn new(settings: &NpmSettings) -> Self {
        let client = reqwest::Client::builder()
            .user_agent(concat!("plat-worker-compiler/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .expect("an HTTP client with rustls builds");
        Self {
            registry: Registry {
                url: settings.registry.clone(),
                client,
            },
            store: Store::new(settings.store.clone()),
        }
    }

    /// `locked` as it is when it covers `dependencies` (the same declared
    /// ranges), else a fresh resolution of them.
    pub(crate) async fn resolve(
        &self,
        dependencies: &Dependencies,
        locked: Option<&str>,
    ) -> Result<Lockfile, PackageError> {
        let declared: BTreeMap<String, String> = dependencies
            .iter()
            .map(|(name, spec)| (name.clone(), spec.version().to_owned()))
            .collect();
        if let Some(lock) = locked
            .and_then(Lockfile::parse)
            .filter(|lock| lock.declared == declared)
        {
            return Ok(lock);
        }
        registry::resolve(&self.registry, &declared).await
    }

    /// The folder holding `lock`'s `node_modules`, installed.
    pub(crate) async fn install(&self, lock: &Lockfile) -> Result<PathBuf, PackageError> {
        self.store.install(&self.registry, lock).await
    }
}

/// Every package of `lock`, for the policy's checks.
pub(crate) fn resolved_packages(lock: &Lockfile) -> Vec<ResolvedPackage> {
    lock.packages
        .values()
        .map(|p| ResolvedPackage {
            name: p.name.clone(),
            version: p.version.clone(),
            direct: lock.direct.get(&p.name) == Some(&p.version),
        })
        .collect()
}

/// Why packages could not be resolved or installed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PackageError {
    #[error("could not reach the npm registry for {what}: {source}")]
    Unreachable {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("npm package `{name}` does not exist in the registry")]
    NotFound { name: String },
    #[error("npm package `{name}` has no version matching `{range}`{}", needed_by_note(.needed_by))]
    NoMatch {
        name: String,
        range: String,
        needed_by: Option<String>,
    },
    #[error(
        "npm package `{name}`: `{range}` is not a version range Plat can resolve (a semver \
         range or a dist-tag; git, URL, file and alias specifiers are not supported){}",
        needed_by_note(.needed_by)
    )]
    UnsupportedRange {
        name: String,
        range: String,
        needed_by: Option<String>,
    },
    #[error(
        "npm package `{package}` publishes no sha512 integrity, so Plat cannot check its tarball"
    )]
    NoIntegrity { package: String },
    #[error(
        "npm package `{package}`: {checked} does not match the lockfile's integrity `{expected}`; \
         the package was not used"
    )]
    Integrity {
        package: String,
        checked: &'static str,
        expected: String,
    },
    #[error("npm package `{package}` has a tarball Plat refuses: {reason}")]
    BadTarball { package: String, reason: String },
    #[error("{what} is larger than Plat accepts")]
    TooLarge { what: String },
    #[error("npm package `{name}`: the registry's metadata could not be read: {reason}")]
    BadMetadata { name: String, reason: String },
    #[error("the dependencies pull in more than {max} npm packages")]
    TooMany { max: usize },
}

fn needed_by_note(needed_by: &Option<String>) -> String {
    needed_by
        .as_ref()
        .map(|by| format!(" (needed by `{by}`)"))
        .unwrap_or_default()
}

impl PackageError {
    fn io(context: &'static str, source: std::io::Error) -> Self {
        Self::Io { context, source }
    }

    fn integrity(package: &LockedPackage, checked: &'static str) -> Self {
        let error = Self::Integrity {
            package: format!("{}@{}", package.name, package.version),
            checked,
            expected: package.integrity.clone(),
        };
        tracing::warn!(%error, "npm package integrity mismatch");
        error
    }
}

impl From<PackageError> for CompileFailure {
    fn from(error: PackageError) -> Self {
        match error {
            // Ours to retry: the registry or the disk failed, not the user.
            PackageError::Unreachable { .. } => CompileFailure::Infra(InfraError::Io {
                context: "fetching npm packages",
                source: std::io::Error::other(error.to_string()),
            }),
            PackageError::Io { context, source } => {
                CompileFailure::Infra(InfraError::Io { context, source })
            }
            user => CompileFailure::User(user.to_string()),
        }
    }
}

/// The body of `response`, or `None` once it passes `limit` bytes.
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}
