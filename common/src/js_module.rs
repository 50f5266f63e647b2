//! How a TypeScript function's module links against the shared JavaScript
//! engine: the names both sides agree on.
//!
//! A TypeScript version's module is tiny: its `_start` copies the function's
//! QuickJS bytecode (and its position map) into the engine's memory and
//! calls the engine's `plat_invoke`. Every import it has comes from
//! [`ENGINE_IMPORT_MODULE`] and is resolved against an instance of the engine
//! build it was compiled for, named in the version's `engine_sha256` (and in
//! the module's [`ENGINE_SECTION`] custom section).

/// The import module name under which the engine's exports are linked.
pub const ENGINE_IMPORT_MODULE: &str = "plat:js-engine";
/// The engine's linear memory, shared with the function module.
pub const MEMORY: &str = "memory";
/// The engine's allocator: `(old_ptr, old_len, align, new_len) -> ptr`.
pub const REALLOC: &str = "cabi_realloc";
/// Runs one execution: `(code_ptr, code_len, map_ptr, map_len)`.
pub const INVOKE: &str = "plat_invoke";
/// Custom section of a function module holding the sha256 (hex) of the
/// engine build it links against.
pub const ENGINE_SECTION: &str = "plat.js-engine-sha256";

/// Stores an engine build under its sha256 (once: later calls are no-ops).
/// A compiler calls this before it marks any version built with it READY.
pub async fn store_engine(
    db: impl sqlx::PgExecutor<'_>,
    sha256: &str,
    module: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"insert into js_engines (sha256, module) values ($1, $2) on conflict (sha256) do nothing"#,
        sha256,
        module,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The engine build `sha256`, if stored.
pub async fn load_engine(
    db: impl sqlx::PgExecutor<'_>,
    sha256: &str,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar!(r#"select module from js_engines where sha256 = $1"#, sha256)
        .fetch_optional(db)
        .await
}
