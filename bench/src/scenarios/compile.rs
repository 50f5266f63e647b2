//! How long a build takes, from `POST /functions` until `GET` shows READY:
//! on a compiler whose cache was empty (its preparation timed on its own),
//! again on the same compiler, and for TypeScript.

use std::time::Instant;

use anyhow::Context as _;
use plat_worker_compiler::compile::Toolchains;
use serde_json::json;

use crate::platform::Platform;
use crate::report::Group;
use crate::sources;

pub async fn run(platform: &mut Platform, notes: &mut Vec<String>) -> anyhow::Result<Group> {
    // Every build must land on the fresh compiler.
    platform.stop_compiler().await?;
    let cache = tempfile::Builder::new()
        .prefix("plat-bench-cache-")
        .tempdir()
        .context("creating a fresh compiler cache")?;

    // What `plat_worker_compiler::run` does first, timed on its own: on an
    // empty cache, cargo builds serde and serde_json for wasm32-wasip1 and a
    // test compile proves the sandbox, while the TypeScript engine is
    // pre-initialised with wizer.
    let started = Instant::now();
    let toolchains = Toolchains::prepare(cache.path())
        .await
        .context("preparing the toolchains on an empty cache")?;
    let prepare = started.elapsed();
    let compiler = platform
        .start_compiler_with(toolchains, cache.path().to_path_buf())
        .await?;

    let mut group = Group::new("compile");
    group.push(
        "prepare_ms",
        "compiler preparation, empty cache: ms",
        ms(prepare),
    );
    let builds = [
        (
            "rust_first_ms",
            "Rust hello, first build: ms",
            "hello-first",
            "rust",
            sources::HELLO_RUST,
        ),
        (
            "rust_warm_ms",
            "Rust hello, second build: ms",
            "hello-second",
            "rust",
            sources::HELLO_RUST,
        ),
        (
            "typescript_ms",
            "TypeScript hello: ms",
            "hello-ts",
            "typescript",
            sources::HELLO_TS,
        ),
    ];
    for (key, label, name, language, source) in builds {
        let started = Instant::now();
        let id = platform.api.create_function(name, language, source).await?;
        let ready = platform.api.wait_ready(id).await?;
        group.push(key, label, ms(ready - started));
    }
    // With dependencies: the first function with a set resolves, fetches and
    // builds it; the second with the same set finds it cached and should take
    // about as long as hello (docs/dependencies.md).
    let rust_set = json!({ "regex": "1", "sha2": "0.10", "hex": "0.4" });
    let typescript_set = json!({ "zod": "^3.23.8", "date-fns": "^3.6.0" });
    let with_dependencies = [
        (
            "rust_deps_first_ms",
            "Rust with regex + sha2 + hex, first build of the set: ms",
            "words-first",
            "rust",
            sources::WORD_STATS_RUST,
            &rust_set,
        ),
        (
            "rust_deps_cached_ms",
            "Rust with regex + sha2 + hex, set cached: ms",
            "words-cached",
            "rust",
            sources::WORD_STATS_RUST,
            &rust_set,
        ),
        (
            "typescript_deps_first_ms",
            "TypeScript with zod + date-fns, first build of the set: ms",
            "signup-first",
            "typescript",
            sources::SIGNUP_TS,
            &typescript_set,
        ),
        (
            "typescript_deps_cached_ms",
            "TypeScript with zod + date-fns, set cached: ms",
            "signup-cached",
            "typescript",
            sources::SIGNUP_TS,
            &typescript_set,
        ),
    ];
    for (key, label, name, language, source, dependencies) in with_dependencies {
        let started = Instant::now();
        let id = platform
            .api
            .create_function_with(name, language, source, dependencies)
            .await?;
        let ready = platform.api.wait_ready(id).await?;
        group.push(key, label, ms(ready - started));
    }
    compiler.stop().await?;
    notes.push(
        "compile: a compiler with an empty cache folder; 'preparation' = Toolchains::prepare \
         (the step plat_worker_compiler::run takes at start: cargo builds serde + serde_json \
         for wasm32-wasip1 and runs a sandbox test compile, while the TypeScript engine is \
         pre-initialised; crates come from cargo's local registry cache once downloaded). \
         Each build = POST /functions until GET /functions/{id} (polled every 20 ms) shows \
         READY; 'first' is that compiler's first build, right after its preparation. \
         With dependencies: 'first build of the set' resolves the set against the registry, \
         fetches what cargo's or the compiler's cache lacks, and builds it (Rust: in the \
         sandbox); 'set cached' is a second function with the same set."
            .to_owned(),
    );
    Ok(group)
}

fn ms(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
