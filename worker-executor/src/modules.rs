//! Loaded modules, cached per function version.
//!
//! A version's module and execution config never change once READY, so the
//! pair is cached by `(function_id, version)` without invalidation. Loading
//! (Cranelift compiling the module) costs tens to hundreds of milliseconds,
//! so concurrent first runs of one version share a single load.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use plat_common::ExecutionConfig;
use sqlx::PgPool;
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::runtime::{LoadedModule, RunLimits, Runtime};

/// A version ready to run.
pub(crate) struct Cached {
    pub(crate) module: LoadedModule,
    pub(crate) limits: RunLimits,
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

pub(crate) struct ModuleCache {
    runtime: Arc<Runtime>,
    slots: Mutex<LruCache<Key, Slot>>,
}

impl ModuleCache {
    pub(crate) fn new(runtime: Arc<Runtime>, capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            runtime,
            slots: Mutex::new(LruCache::new(capacity)),
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
            let mut slots = self
                .slots
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            slots
                .get_or_insert((function_id, version), Slot::default)
                .clone()
        };
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
        let row: Option<(Vec<u8>, sqlx::types::Json<ExecutionConfig>)> = sqlx::query_as(
            r#"
            select module, execution_config from function_versions
            where function_id = $1 and version = $2 and status = 'READY'
            "#,
        )
        .bind(function_id)
        .bind(version)
        .fetch_optional(pool)
        .await?;
        let Some((wasm, sqlx::types::Json(config))) = row else {
            return Err(LoadError::Missing { version });
        };
        let runtime = self.runtime.clone();
        let span = tracing::Span::current();
        let module = tokio::task::spawn_blocking(move || span.in_scope(|| runtime.load(&wasm)))
            .await?
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        tracing::debug!(%function_id, version, "module loaded");
        Ok(Arc::new(Cached {
            module,
            limits: RunLimits::from(&config),
        }))
    }
}
