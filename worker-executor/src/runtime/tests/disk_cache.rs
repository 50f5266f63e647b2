//! The disk cache of compiled code, with real wasmtime and real files. Each
//! test makes its own runtimes, as separate processes would be, over its own
//! temporary folder.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use super::{limits, ECHO};
use crate::runtime::disk_cache::Origin;
use crate::runtime::Runtime;

fn cached_runtime(dir: &Path) -> Runtime {
    Runtime::with_disk_cache(Some(dir)).expect("runtime")
}

/// The `.cwasm` files in `dir` (a missing folder has none).
fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "cwasm"))
        .collect();
    files.sort();
    files
}

/// What `runtime` loads and runs `ECHO` to: the run must succeed whatever
/// the cache did.
fn echo_through(runtime: &Runtime) -> Result<String, String> {
    let module = runtime.load(ECHO.wasm()).map_err(|e| format!("{e:#}"))?;
    runtime
        .run(&module, br#"{"cached":true}"#, &limits())
        .result
        .map_err(|failure| failure.message)
}

fn origin(runtime: &Runtime) -> Origin {
    runtime.compile_or_read(ECHO.wasm()).expect("compiles").1
}

#[test]
fn a_module_loaded_by_two_runtimes_through_one_folder_is_compiled_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = cached_runtime(dir.path());

    let first_origin = origin(&first);
    let files = cache_files(dir.path());
    let second = cached_runtime(dir.path());
    let second_origin = origin(&second);

    assert_eq!(first_origin, Origin::Compiled);
    assert_eq!(files.len(), 1, "one file per module: {files:?}");
    assert_eq!(second_origin, Origin::Disk, "the second runtime reads it");
    assert_eq!(
        echo_through(&second),
        Ok(r#"{"cached":true}"#.to_owned()),
        "code read from disk runs"
    );
    assert_eq!(cache_files(dir.path()), files, "nothing rewritten");
}

#[test]
fn a_missing_cache_folder_is_created_private_to_us() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("data/module-cache");

    let runtime = cached_runtime(&dir);
    let result = echo_through(&runtime);

    assert_eq!(result, Ok(r#"{"cached":true}"#.to_owned()));
    let mode = fs::metadata(&dir).expect("created").permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(cache_files(&dir).len(), 1);
}

#[test]
fn a_damaged_or_torn_cache_file_is_recompiled_and_replaced() {
    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, Damage); 4] = [
        ("a flipped byte in the code", |bytes| {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x40;
        }),
        ("cut in half", |bytes| bytes.truncate(bytes.len() / 2)),
        ("empty", Vec::clear),
        ("another file's bytes", |bytes| {
            *bytes = b"\x7fELF not ours at all".to_vec()
        }),
    ];
    for (damage, apply) in damages {
        let dir = tempfile::tempdir().expect("tempdir");
        origin(&cached_runtime(dir.path()));
        let [file] = cache_files(dir.path()).try_into().expect("one cache file");
        let mut bytes = fs::read(&file).expect("read cache file");
        apply(&mut bytes);
        fs::write(&file, &bytes).expect("damage cache file");

        let runtime = cached_runtime(dir.path());
        let after_damage = origin(&runtime);
        let result = echo_through(&runtime);
        let after_rewrite = origin(&cached_runtime(dir.path()));

        assert_eq!(after_damage, Origin::Compiled, "{damage}: not loaded");
        assert_eq!(result, Ok(r#"{"cached":true}"#.to_owned()), "{damage}");
        assert_eq!(
            after_rewrite,
            Origin::Disk,
            "{damage}: the file was replaced"
        );
    }
}

#[test]
fn a_cache_folder_others_may_write_to_is_not_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");

    let runtime = cached_runtime(dir.path());
    let result = echo_through(&runtime);
    let origins = [origin(&runtime), origin(&cached_runtime(dir.path()))];

    assert_eq!(result, Ok(r#"{"cached":true}"#.to_owned()));
    assert_eq!(origins, [Origin::Compiled, Origin::Compiled]);
    assert_eq!(cache_files(dir.path()), Vec::<PathBuf>::new());
}

#[test]
fn a_cache_folder_that_cannot_be_created_or_disappears_never_fails_a_load() {
    let root = tempfile::tempdir().expect("tempdir");
    let not_a_folder = root.path().join("file");
    fs::write(&not_a_folder, b"").expect("write file");
    let vanishing = root.path().join("vanishing");

    let uncreatable = cached_runtime(&not_a_folder.join("module-cache"));
    let vanished = cached_runtime(&vanishing);
    fs::remove_dir(&vanishing).expect("remove the folder after start");

    assert_eq!(
        echo_through(&uncreatable),
        Ok(r#"{"cached":true}"#.to_owned())
    );
    assert_eq!(echo_through(&vanished), Ok(r#"{"cached":true}"#.to_owned()));
    assert_eq!(origin(&vanished), Origin::Compiled);
}
