//! Builds the JavaScript engine that TypeScript functions link against
//! (`js-engine/`: QuickJS from the `javy` crate, built for wasm32-wasip1) and
//! leaves it in `OUT_DIR` for `include_bytes!`.
//!
//! The engine is a separate cargo workspace because it targets wasm32 and
//! builds C (QuickJS) with Debian's clang-16 against wasi-libc; the recipe and
//! its measurements are in docs/architecture.md ("TypeScript"). The
//! compiler pre-initialises this module with wizer when it starts (see
//! `src/compile/typescript/engine.rs`), so the bytes here are the raw build.

use std::env;
use std::fs;
use std::io;
use std::os::fd::AsFd as _;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Debian packages the engine build needs, for the error messages.
const APT_PACKAGES: &str =
    "clang-16 lld-16 llvm-16 wasi-libc libclang-rt-16-dev-wasm32 libclang1-16";
const WASI_INCLUDE: &str = "/usr/include/wasm32-wasi";
const WASI_LIB: &str = "/usr/lib/wasm32-wasi";
const LIBCLANG_DIR: &str = "/usr/lib/llvm-16/lib";
const TARGET: &str = "wasm32-wasip1";
const ARTIFACT: &str = "plat_js_engine.wasm";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let engine_dir = manifest_dir.join("../js-engine");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    for input in ["src", "Cargo.toml", "Cargo.lock", ".cargo", "build.rs"] {
        println!(
            "cargo::rerun-if-changed={}",
            engine_dir.join(input).display()
        );
    }

    check_prerequisites();
    let sysroot = out_dir.join("wasi-sysroot");
    make_sysroot(&sysroot)
        .unwrap_or_else(|e| fail(&format!("creating {}: {e}", sysroot.display())));

    // The build script's environment describes *this* crate's build (TARGET,
    // CARGO_FEATURE_*, RUSTFLAGS, …); a nested cargo must not inherit it, so
    // it gets a clean environment with only what locates the toolchain and
    // the registry, plus the engine's C settings.
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&engine_dir)
        .env_clear()
        .envs(env::vars_os().filter(|(name, _)| keep_variable(&name.to_string_lossy())))
        .args(["build", "--release", "--locked", "--target", TARGET])
        // One target folder for every profile of the host build: the engine
        // is always built in release and is the same for all of them.
        .env("CARGO_TARGET_DIR", engine_dir.join("target"))
        // rquickjs-sys would otherwise download wasi-sdk; Debian's clang-16
        // and wasi-libc do the same job from the package registry.
        .env("RQUICKJS_SYS_NO_WASI_SDK", "1")
        .env("CC_wasm32_wasip1", "clang-16")
        .env("AR_wasm32_wasip1", "llvm-ar-16")
        .env("WASI_SYSROOT", &sysroot)
        .env(
            "BINDGEN_EXTRA_CLANG_ARGS_wasm32_wasip1",
            format!("--sysroot={}", sysroot.display()),
        )
        .env("LIBCLANG_PATH", LIBCLANG_DIR)
        // A build script's stdout is read as cargo directives: the nested
        // build's chatter goes to stderr, shown when the build fails.
        .stdout(stderr_handle())
        .stderr(Stdio::inherit());
    let status = command
        .status()
        .unwrap_or_else(|e| fail(&format!("could not run cargo for js-engine: {e}")));
    if !status.success() {
        fail(&format!(
            "building js-engine failed ({status}); the output above says why. \
             It needs: apt-get install {APT_PACKAGES}; rustup target add {TARGET}"
        ));
    }
    let built = engine_dir
        .join("target")
        .join(TARGET)
        .join("release")
        .join(ARTIFACT);
    fs::copy(&built, out_dir.join("js-engine.wasm"))
        .unwrap_or_else(|e| fail(&format!("copying {}: {e}", built.display())));
}

/// Variables that say where the toolchain, the registry and the network are.
fn keep_variable(name: &str) -> bool {
    matches!(
        name,
        "PATH" | "HOME" | "USER" | "TMPDIR" | "CARGO_HOME" | "RUSTUP_HOME" | "RUSTUP_TOOLCHAIN"
    ) || name.starts_with("CARGO_HTTP_")
        || name.starts_with("CARGO_NET_")
        || name.starts_with("CARGO_REGISTRIES_")
        || name.starts_with("CARGO_REGISTRY_")
        || name.starts_with("SSL_CERT_")
        || name.eq_ignore_ascii_case("http_proxy")
        || name.eq_ignore_ascii_case("https_proxy")
        || name.eq_ignore_ascii_case("no_proxy")
}

/// Fails early with the one command that fixes a missing piece, instead of a
/// C compiler error deep in rquickjs-sys.
fn check_prerequisites() {
    let missing_tool = ["clang-16", "llvm-ar-16"].into_iter().find(|tool| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
    });
    let missing_path = [WASI_INCLUDE, WASI_LIB, LIBCLANG_DIR]
        .into_iter()
        .find(|path| !Path::new(path).is_dir());
    if let Some(what) = missing_tool.or(missing_path) {
        fail(&format!(
            "`{what}` is missing: the TypeScript engine is built with Debian's clang-16 and wasi-libc. \
             Install them with `apt-get install {APT_PACKAGES}` (./scripts/setup does it)"
        ));
    }
}

/// Debian's clang-16 with `--target=wasm32-wasip1` would also search the
/// host's `/usr/include`; a sysroot of its own, whose folders point at
/// wasi-libc under both target names, keeps glibc's headers out.
fn make_sysroot(sysroot: &Path) -> io::Result<()> {
    for (kind, real) in [("include", WASI_INCLUDE), ("lib", WASI_LIB)] {
        let dir = sysroot.join(kind);
        fs::create_dir_all(&dir)?;
        for name in ["wasm32-wasi", "wasm32-wasip1"] {
            let link = dir.join(name);
            if fs::symlink_metadata(&link).is_err() {
                symlink(real, &link)?;
            }
        }
    }
    Ok(())
}

fn stderr_handle() -> Stdio {
    io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    println!("cargo::error={message}");
    std::process::exit(1);
}
