//! The compile queue as the generic worker loop sees it: claim a job, build
//! its source, write READY or FAILED under the lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plat_common::notify;
use plat_common::queue::compile::{self, CompileJob, CompileOutcome, CompileResult};
use plat_common::secrets::{SecretsError, SecretsKey, VersionPart};
use plat_common::worker::{JobOutcome, Queue};
use plat_common::{telemetry, Language};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tracing::{info, info_span, warn, Span};
use uuid::Uuid;

use crate::compile::policy::PolicySource;
use crate::compile::{
    BuildOutput, BuildRequest, CompileFailure, CompileLimits, InfraError, Toolchains,
};

pub(crate) struct CompileQueue {
    pub(crate) pool: PgPool,
    pub(crate) toolchains: Arc<Toolchains>,
    pub(crate) policy: PolicySource,
    pub(crate) secrets_key: SecretsKey,
    pub(crate) limits: CompileLimits,
    pub(crate) worker_id: String,
    pub(crate) lease: Duration,
}

impl CompileQueue {
    /// Opens the job's sealed source (and lockfile) and builds it under the
    /// policy in force now.
    async fn build(&self, job: &CompileJob) -> BuildOutput {
        let failed = |result| BuildOutput {
            result: Err(result),
            lockfile: None,
            warnings: Vec::new(),
        };
        // A job in a language this worker does not know (a newer API's)
        // fails with a clear message.
        let Ok(language) = job.language.parse::<Language>() else {
            return failed(CompileFailure::User(format!(
                "this compiler worker does not build `{}` functions",
                job.language
            )));
        };
        let (source, locked) = match self.open(job) {
            Ok(opened) => opened,
            Err(error) => return failed(CompileFailure::Infra(error)),
        };
        let request = BuildRequest {
            language,
            source: &source,
            dependencies: &job.dependencies,
            locked: locked.as_deref(),
        };
        let policy = self.policy.current();
        self.toolchains.build(request, &policy, &self.limits).await
    }

    /// The job's source and earlier lockfile, in clear. A value this key
    /// cannot open is an infrastructure failure: retried, and in the end the
    /// version fails with the reason, while the operator fixes the key.
    fn open(&self, job: &CompileJob) -> Result<(String, Option<String>), InfraError> {
        let open = |part: VersionPart, sealed: &[u8]| {
            let plain = self
                .secrets_key
                .open_bytes(part.owner(job.function_id, job.version), sealed)
                .map_err(InfraError::Sealed)?;
            String::from_utf8(plain).map_err(|_| InfraError::Sealed(SecretsError::Undecryptable))
        };
        let source = match (&job.source_sealed, &job.source) {
            (Some(sealed), _) => open(VersionPart::Source, sealed)?,
            (None, Some(source)) => source.clone(),
            (None, None) => return Err(InfraError::Sealed(SecretsError::Undecryptable)),
        };
        let locked = job
            .lockfile_sealed
            .as_deref()
            .map(|sealed| open(VersionPart::Lockfile, sealed))
            .transpose()?;
        Ok((source, locked))
    }
}

impl Queue for CompileQueue {
    type Job = CompileJob;

    fn kind(&self) -> &'static str {
        "compile"
    }

    fn worker_id(&self) -> &str {
        &self.worker_id
    }

    fn channel(&self) -> &'static str {
        notify::COMPILE_JOBS
    }

    async fn claim(&self, limit: usize) -> Result<Vec<CompileJob>, sqlx::Error> {
        compile::claim(&self.pool, &self.worker_id, self.lease, limit as i64).await
    }

    fn lease_token(job: &CompileJob) -> Uuid {
        job.lease_token
    }

    fn span(job: &Self::Job) -> Span {
        let span = info_span!("job", request_id = job.request_id.as_deref().unwrap_or(""), job_id = job.id, function_id = %job.function_id, version = job.version, attempt = job.attempt);
        telemetry::join_request(&span, job.request_id.as_deref());
        span
    }

    async fn process(self: Arc<Self>, job: CompileJob) -> JobOutcome {
        let started = Instant::now();
        let output = self.build(&job).await;
        let duration_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
        let language = job.language.parse::<Language>();
        let language = language.map_or("other", Language::as_str);
        metrics::histogram!("plat_compile_duration_seconds", "language" => language)
            .record(started.elapsed().as_secs_f64());
        let built = output.result;
        let lockfile_sealed = output.lockfile.map(|lockfile| {
            let owner = VersionPart::Lockfile.owner(job.function_id, job.version);
            self.secrets_key.seal_bytes(owner, lockfile.as_bytes())
        });
        let written = match &built {
            Ok(built) => {
                let sha256 = hex::encode(Sha256::digest(&built.module));
                let result = CompileResult::Ready {
                    module: &built.module,
                    sha256: &sha256,
                    duration_ms,
                    engine_sha256: built.engine_sha256.as_deref(),
                };
                let outcome = CompileOutcome {
                    result,
                    lockfile_sealed: lockfile_sealed.as_deref(),
                    warnings: &output.warnings,
                };
                compile::complete(&self.pool, &job, outcome).await
            }
            Err(CompileFailure::User(message)) => {
                let outcome = CompileOutcome {
                    result: CompileResult::Failed {
                        compile_error: message,
                    },
                    lockfile_sealed: lockfile_sealed.as_deref(),
                    warnings: &output.warnings,
                };
                compile::complete(&self.pool, &job, outcome).await
            }
            Err(CompileFailure::Infra(error)) => {
                compile::retry_or_fail(&self.pool, &job, &error.to_string()).await
            }
        };
        match written {
            Ok(true) => match &built {
                Ok(built) => {
                    info!(
                        duration_ms,
                        wasm_bytes = built.module.len(),
                        "function version READY"
                    );
                    JobOutcome::Ready
                }
                Err(CompileFailure::User(_)) => {
                    info!(duration_ms, "function version FAILED to compile");
                    JobOutcome::Failed
                }
                Err(CompileFailure::Infra(error)) => {
                    warn!(%error, "compile will be retried");
                    JobOutcome::Retried
                }
            },
            Ok(false) => {
                warn!("lease lost before the result was written; another attempt owns the job");
                JobOutcome::LeaseLost
            }
            // The lease will expire and the rescuer hands the job to another
            // attempt: nothing is lost, only delayed.
            Err(error) => {
                warn!(%error, "could not record the compile result");
                JobOutcome::Unrecorded
            }
        }
    }

    async fn heartbeat(&self, tokens: &[Uuid]) -> Result<u64, sqlx::Error> {
        compile::heartbeat(&self.pool, tokens, self.lease).await
    }

    async fn release(&self, token: Uuid) -> Result<(), sqlx::Error> {
        compile::release(&self.pool, token).await
    }

    async fn rescue(&self) -> Result<u64, sqlx::Error> {
        compile::rescue_expired(&self.pool).await
    }
}
