//! Loaded modules, cached per function version.
//!
//! A version's module and execution config never change once READY, so the
//! pair is cached by `(function_id, version)` without invalidation. Loading
//! (Cranelift compiling the module) costs tens to hundreds of milliseconds,
//! or about a millisecond when the runtime's disk cache already holds the
//! code, so concurrent first runs of one version share a single load.
//!
//! TypeScript versions link against a JavaScript engine build, loaded once
//! per process per build (by sha256) and kept: there are only ever a few.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;
use plat_common::{ExecutionConfig, RetryPolicy};
use sqlx::PgPool;
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::runtime::{LoadedEngine, LoadedModule, RunLimits, Runtime};

/// A version ready to run.
pub(crate) struct Cached {
    pub(crate) module: LoadedModule,
    pub(crate) limits: RunLimits,
    /// The version's `executionConfig.retry`, if any.
    pub(crate) retry: Option<RetryPolicy>,
}

/// Why a version could not be made ready to run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// The version is gone (its function was deleted) or not READY.
    #[error("function version {version} no longer exists (was the function deleted?)")]
    Missing { version: i32 },
    /// The stored module is not one wasmtime accepts.
    #[error("the compiled module could not be loaded: {0}")]
    Invalid(String),
    /// Reading it failed: an infrastructure problem, worth a retry.
    #[error("reading the module failed: {0}")]
    Database(#[from] sqlx::Error),
    /// The blocking load task died.
    #[error("loading the module failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

type Key = (Uuid, i32);
type Slot = Arc<OnceCell<Arc<Cached>>>;
type EngineSlot = Arc<OnceCell<Arc<LoadedEngine>>>;

pub(crate) struct ModuleCache {
    runtime: Arc<Runtime>,
    slots: Mutex<LruCache<Key, Slot>>,
    engines: Mutex<HashMap<String, EngineSlot>>,
}

impl ModuleCache {
    pub(crate) fn new(runtime: Arc<Runtime>, capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            runtime,
            slots: Mutex::new(LruCache::new(capacity)),
            engines: Mutex::default(),
        }
    }

    /// The ready version, loading it from the database on a miss.
    pub(crate) async fn get(
        &self,
        pool: &PgPool,
        function_id: Uuid,
        version: i32,
    ) -> Result<Arc<Cached>, LoadError> {
        let slot = {
            let mut slots = self.slots.lock();
            slots
                .get_or_insert((function_id, version), Slot::default)
                .clone()
        };
        let result = if slot.initialized() { "hit" } else { "miss" };
        metrics::counter!("plat_module_cache_total", "result" => result).increment(1);
        // A failed load leaves the cell empty, so the next run tries again.
        slot.get_or_try_init(|| self.load(pool, function_id, version))
            .await
            .cloned()
    }

    async fn load(
        &self,
        pool: &PgPool,
        function_id: Uuid,
        version: i32,
    ) -> Result<Arc<Cached>, LoadError> {
        let row = sqlx::query!(
            r#"
            select module as "module!", execution_config as "execution_config: sqlx::types::Json<ExecutionConfig>",
                   engine_sha256
            from function_versions
            where function_id = $1 and version = $2 and status = 'READY'
            "#,
            function_id,
            version,
        )
        .fetch_optional(pool)
        .await?;
        let Some(row) = row else {
            return Err(LoadError::Missing { version });
        };
        let (wasm, sqlx::types::Json(config), engine_sha256) =
            (row.module, row.execution_config, row.engine_sha256);
        let engine = match engine_sha256 {
            Some(sha256) => Some(self.engine(pool, sha256).await?),
            None => None,
        };
        let runtime = self.runtime.clone();
        let span = tracing::Span::current();
        let module = tokio::task::spawn_blocking(move || {
            span.in_scope(|| match engine {
                Some(engine) => runtime.load_linked(&wasm, engine),
                None => runtime.load(&wasm),
            })
        })
        .await?
        .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        tracing::debug!(%function_id, version, "module loaded");
        Ok(Arc::new(Cached {
            module,
            limits: RunLimits::from(&config),
            retry: config.retry,
        }))
    }

    /// Loads the newest JavaScript engine build ahead of its first run, so
    /// the first TypeScript execution on this worker does not wait for
    /// Cranelift (about 0.6 s). Without any stored engine it does nothing.
    pub(crate) async fn preload_newest_engine(&self, pool: &PgPool) -> Result<(), LoadError> {
        let newest =
            sqlx::query_scalar!("select sha256 from js_engines order by created_at desc limit 1")
                .fetch_optional(pool)
                .await?;
        if let Some(sha256) = newest {
            self.engine(pool, sha256).await?;
        }
        Ok(())
    }

    /// The JavaScript engine build `sha256`, loading it on first use.
    async fn engine(&self, pool: &PgPool, sha256: String) -> Result<Arc<LoadedEngine>, LoadError> {
        let slot = self
            .engines
            .lock()
            .entry(sha256.clone())
            .or_default()
            .clone();
        slot.get_or_try_init(|| async {
            let wasm = plat_common::js_module::load_engine(pool, &sha256)
                .await?
                .ok_or_else(|| {
                    LoadError::Invalid(format!("JavaScript engine {sha256} is not stored"))
                })?;
            let runtime = self.runtime.clone();
            let span = tracing::Span::current();
            let engine =
                tokio::task::spawn_blocking(move || span.in_scope(|| runtime.load_engine(&wasm)))
                    .await?
                    .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
            tracing::info!(engine_sha256 = %sha256, "JavaScript engine loaded");
            Ok(Arc::new(engine))
        })
        .await
        .cloned()
    }
}
