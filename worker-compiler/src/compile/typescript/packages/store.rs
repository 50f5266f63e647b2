//! The shared package store: each `name@version` downloaded once, checked
//! against its lockfile integrity BEFORE anything is unpacked, and unpacked
//! (regular files and folders only, inside its own folder, within size
//! limits) into a folder that appears atomically and is never written
//! again. Then one `node_modules` tree per lockfile, built from the store.
//!
//! ```text
//! <store>/packages/<name>@<version>/integrity      what it was checked against
//! <store>/packages/<name>@<version>/package/…     the unpacked tarball
//! <store>/trees/<lock hash>/node_modules/<direct> -> .plat/<name>@<version>/node_modules/<name>
//! <store>/trees/<lock hash>/node_modules/.plat/<name>@<version>/node_modules/<name>/…   (hard links)
//! <store>/trees/<lock hash>/node_modules/.plat/<name>@<version>/node_modules/<dep> -> ../../<dep>@<v>/node_modules/<dep>
//! ```
//!
//! The tree is pnpm's layout: a package's files sit in a real folder whose
//! parent `node_modules` holds exactly its dependencies, so the bundler's
//! ordinary Node resolution finds each package's own versions.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use sha2::{Digest, Sha512};

use super::lockfile::{LockedPackage, Lockfile};
use super::{PackageError, Registry};

/// Largest tarball downloaded.
const MAX_TARBALL_BYTES: usize = 32 << 20;
/// Most bytes one package may unpack to.
const MAX_UNPACKED_BYTES: u64 = 256 << 20;
/// Most files and folders one package may hold.
const MAX_ENTRIES: usize = 20_000;

/// Where a lockfile's packages are installed.
pub(crate) struct Store {
    root: PathBuf,
}

impl Store {
    pub(crate) fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The `node_modules` tree of `lock` (its parent folder), downloading
    /// what the store lacks.
    pub(crate) async fn install(
        &self,
        registry: &Registry,
        lock: &Lockfile,
    ) -> Result<PathBuf, PackageError> {
        let tree = self.root.join("trees").join(lock.hash());
        if tree.is_dir() {
            return Ok(tree);
        }
        let mut unpacked = Vec::with_capacity(lock.packages.len());
        for package in lock.packages.values() {
            unpacked.push((package.clone(), self.package(registry, package).await?));
        }
        let root = self.root.clone();
        let lock = lock.clone();
        tokio::task::spawn_blocking(move || build_tree(&root, &lock, &unpacked))
            .await
            .map_err(|_| {
                PackageError::io(
                    "building the package tree",
                    std::io::Error::other("the task died"),
                )
            })?
    }

    /// The unpacked folder of `package`, fetched and checked if missing.
    async fn package(
        &self,
        registry: &Registry,
        package: &LockedPackage,
    ) -> Result<PathBuf, PackageError> {
        let folder = self.root.join("packages").join(format!(
            "{}@{}",
            folder_name(&package.name),
            package.version
        ));
        if folder.is_dir() {
            let verified = std::fs::read_to_string(folder.join("integrity"))
                .map_err(|e| PackageError::io("reading a stored package's integrity", e))?;
            if verified.trim() != package.integrity {
                return Err(PackageError::integrity(
                    package,
                    "the copy this worker verified earlier",
                ));
            }
            return Ok(folder.join("package"));
        }
        let tarball = download(registry, package).await?;
        check_integrity(package, &tarball)?;
        let root = self.root.clone();
        let package = package.clone();
        tokio::task::spawn_blocking(move || unpack_into_store(&root, &package, &tarball, &folder))
            .await
            .map_err(|_| {
                PackageError::io(
                    "unpacking a package",
                    std::io::Error::other("the task died"),
                )
            })?
    }
}

/// `@scope/name` as one path segment.
fn folder_name(name: &str) -> String {
    name.replace('/', "+")
}

async fn download(registry: &Registry, package: &LockedPackage) -> Result<Vec<u8>, PackageError> {
    let what = || format!("the tarball of `{}@{}`", package.name, package.version);
    let unreachable = |source| PackageError::Unreachable {
        what: what(),
        source,
    };
    let response = registry
        .get(&package.resolved, None)
        .await
        .map_err(unreachable)?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Err(PackageError::NotFound {
            name: format!("{}@{}", package.name, package.version),
        });
    }
    let response = response.error_for_status().map_err(unreachable)?;
    super::read_limited(response, MAX_TARBALL_BYTES)
        .await
        .map_err(unreachable)?
        .ok_or_else(|| PackageError::TooLarge { what: what() })
}

/// Whether `tarball` has one of the sha512 digests of the package's
/// Subresource Integrity string (`sha512-<base64>`, possibly several).
fn check_integrity(package: &LockedPackage, tarball: &[u8]) -> Result<(), PackageError> {
    let digest = Sha512::digest(tarball);
    let matches = package
        .integrity
        .split_whitespace()
        .filter_map(|hash| hash.strip_prefix("sha512-"))
        .filter_map(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .any(|expected| expected.as_slice() == digest.as_slice());
    if matches {
        Ok(())
    } else {
        Err(PackageError::integrity(package, "the downloaded tarball"))
    }
}

fn unpack_into_store(
    root: &Path,
    package: &LockedPackage,
    tarball: &[u8],
    folder: &Path,
) -> Result<PathBuf, PackageError> {
    let packages = root.join("packages");
    std::fs::create_dir_all(&packages)
        .map_err(|e| PackageError::io("creating the package store", e))?;
    let staging = tempfile::Builder::new()
        .prefix(".unpacking-")
        .tempdir_in(&packages)
        .map_err(|e| PackageError::io("creating a staging folder", e))?;
    unpack(package, tarball, &staging.path().join("package"))?;
    std::fs::write(staging.path().join("integrity"), &package.integrity)
        .map_err(|e| PackageError::io("recording a package's integrity", e))?;
    let staged = staging.keep();
    if let Err(error) = std::fs::rename(&staged, folder) {
        let _ = std::fs::remove_dir_all(&staged);
        // Another compile stored the same package first: use theirs.
        if !folder.is_dir() {
            return Err(PackageError::io("storing an unpacked package", error));
        }
    }
    Ok(folder.join("package"))
}

/// Unpacks an npm tarball (gzip'd tar whose entries sit under one top
/// folder, usually `package/`) into `into`. Only regular files and folders
/// are written: links and devices are skipped, since a package has no use
/// for them and a link could point outside the store.
fn unpack(package: &LockedPackage, tarball: &[u8], into: &Path) -> Result<(), PackageError> {
    let bad = |reason: String| PackageError::BadTarball {
        package: format!("{}@{}", package.name, package.version),
        reason,
    };
    std::fs::create_dir_all(into).map_err(|e| PackageError::io("creating a package folder", e))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tarball));
    let mut written: u64 = 0;
    let entries = archive.entries().map_err(|e| bad(e.to_string()))?;
    for (count, entry) in entries.enumerate() {
        if count >= MAX_ENTRIES {
            return Err(bad(format!("it holds more than {MAX_ENTRIES} entries")));
        }
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            continue;
        }
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let Some(relative) = inside_top_folder(&path) else {
            return Err(bad(format!("entry `{}` leaves its folder", path.display())));
        };
        if relative.as_os_str().is_empty() {
            continue;
        }
        let target = into.join(&relative);
        if kind.is_dir() {
            std::fs::create_dir_all(&target)
                .map_err(|e| PackageError::io("unpacking a folder", e))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| PackageError::io("unpacking a folder", e))?;
        }
        let remaining = MAX_UNPACKED_BYTES - written;
        let mut file =
            std::fs::File::create(&target).map_err(|e| PackageError::io("unpacking a file", e))?;
        let copied = std::io::copy(&mut (&mut entry).take(remaining + 1), &mut file)
            .map_err(|e| bad(e.to_string()))?;
        if copied > remaining {
            return Err(bad(format!(
                "it unpacks to more than {} MiB",
                MAX_UNPACKED_BYTES >> 20
            )));
        }
        written += copied;
    }
    Ok(())
}

/// `package/lib/x.js` → `lib/x.js`; `None` for anything that is not a
/// plain relative path (`..`, absolute, a drive).
fn inside_top_folder(path: &Path) -> Option<PathBuf> {
    let mut components = path.components();
    match components.next()? {
        Component::Normal(_) => {}
        _ => return None,
    }
    let mut relative = PathBuf::new();
    for component in components {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(relative)
}

/// Builds the tree of `lock` under `<root>/trees/<hash>`, atomically.
fn build_tree(
    root: &Path,
    lock: &Lockfile,
    unpacked: &[(LockedPackage, PathBuf)],
) -> Result<PathBuf, PackageError> {
    let io = |context| move |e| PackageError::io(context, e);
    let trees = root.join("trees");
    let tree = trees.join(lock.hash());
    std::fs::create_dir_all(&trees).map_err(io("creating the package trees folder"))?;
    let staging = tempfile::Builder::new()
        .prefix(".building-")
        .tempdir_in(&trees)
        .map_err(io("creating a staging folder"))?;
    let modules = staging.path().join("node_modules");
    let instance = |name: &str, version: &str| {
        PathBuf::from(".plat").join(format!("{}@{version}", folder_name(name)))
    };
    for (package, files) in unpacked {
        let home = modules
            .join(instance(&package.name, &package.version))
            .join("node_modules");
        link_files(files, &home.join(&package.name)).map_err(io("linking a package's files"))?;
        for (dependency, version) in &package.dependencies {
            if *dependency == package.name {
                continue;
            }
            // From `<home>/<dependency>` up to `node_modules/`: one step per
            // segment of the name, then out of `<home>` and `.plat/<instance>`.
            let up = "../".repeat(dependency.split('/').count() + 1);
            let target = PathBuf::from(up)
                .join(format!("{}@{version}", folder_name(dependency)))
                .join("node_modules")
                .join(dependency);
            symlink(&target, &home.join(dependency)).map_err(io("linking a dependency"))?;
        }
    }
    for (name, version) in &lock.direct {
        let up = "../".repeat(name.split('/').count() - 1);
        let target = PathBuf::from(up)
            .join(instance(name, version))
            .join("node_modules")
            .join(name);
        symlink(&target, &modules.join(name)).map_err(io("linking a declared package"))?;
    }
    let staged = staging.keep();
    if let Err(error) = std::fs::rename(&staged, &tree) {
        let _ = std::fs::remove_dir_all(&staged);
        if !tree.is_dir() {
            return Err(PackageError::io("storing a package tree", error));
        }
    }
    Ok(tree)
}

/// Mirrors the folder `from` at `to` with hard links (a copy where the
/// store and the tree are on different file systems).
fn link_files(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            link_files(&entry.path(), &target)?;
        } else if std::fs::hard_link(entry.path(), &target).is_err() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::os::unix::fs::symlink(target, link)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{check_integrity, unpack, LockedPackage};
    use crate::compile::typescript::packages::PackageError;

    fn package(integrity: &str) -> LockedPackage {
        LockedPackage {
            name: "hostile".to_owned(),
            version: "1.0.0".to_owned(),
            resolved: "https://registry.example/hostile-1.0.0.tgz".to_owned(),
            integrity: integrity.to_owned(),
            dependencies: BTreeMap::new(),
        }
    }

    /// A gzip'd tar of `entries`: (raw path, kind, contents or link target).
    fn tarball(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut header = tar::Header::new_old();
            // Written raw: `set_path` itself refuses `..`.
            header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            if kind.is_symlink() || kind.is_hard_link() {
                header.set_link_name(data).expect("a link name");
                header.set_size(0);
                header.set_cksum();
                builder.append(&header, std::io::empty()).expect("appends");
            } else {
                header.set_size(data.len() as u64);
                header.set_cksum();
                builder.append(&header, data.as_bytes()).expect("appends");
            }
        }
        let tar = builder.into_inner().expect("a tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).expect("compresses");
        gz.finish().expect("a gzip")
    }

    #[test]
    fn files_and_folders_are_unpacked_and_links_skipped() {
        let into = tempfile::tempdir().expect("a temporary folder");
        let bytes = tarball(&[
            (
                "package/index.js",
                tar::EntryType::Regular,
                "module.exports = 1;",
            ),
            ("package/lib/", tar::EntryType::Directory, ""),
            ("package/lib/a.js", tar::EntryType::Regular, "a"),
            ("package/passwd", tar::EntryType::Symlink, "/etc/passwd"),
            ("package/hard", tar::EntryType::Link, "/etc/passwd"),
        ]);
        unpack(&package(""), &bytes, into.path()).expect("unpacks");
        assert_eq!(
            std::fs::read_to_string(into.path().join("index.js")).unwrap(),
            "module.exports = 1;"
        );
        assert_eq!(
            std::fs::read_to_string(into.path().join("lib/a.js")).unwrap(),
            "a"
        );
        assert!(std::fs::symlink_metadata(into.path().join("passwd")).is_err());
        assert!(std::fs::symlink_metadata(into.path().join("hard")).is_err());
    }

    #[test]
    fn an_entry_leaving_its_folder_refuses_the_package() {
        let into = tempfile::tempdir().expect("a temporary folder");
        let outside = into.path().join("escaped");
        let bytes = tarball(&[("package/../../escaped", tar::EntryType::Regular, "x")]);
        let error = unpack(&package(""), &bytes, &into.path().join("p")).unwrap_err();
        assert!(
            matches!(&error, PackageError::BadTarball { package, reason }
                if package == "hostile@1.0.0" && reason.contains("leaves its folder")),
            "{error}"
        );
        assert!(!outside.exists());
    }

    #[test]
    fn integrity_is_the_sha512_of_the_tarball() {
        // sha512 of the empty input.
        let empty = "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==";
        assert!(check_integrity(&package(empty), b"").is_ok());
        assert!(matches!(
            check_integrity(&package(empty), b"tampered"),
            Err(PackageError::Integrity { .. })
        ));
        // A sha1-only integrity never matches.
        assert!(check_integrity(&package("sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk="), b"").is_err());
    }
}
