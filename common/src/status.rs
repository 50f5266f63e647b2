//! The states a function version and an execution go through: the
//! database's `version_status` and `execution_status` types, and the
//! `status` fields of the API.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::Type;
use utoipa::ToSchema;

use crate::language::{by_name, names};

/// Where a version's build is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Type, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "version_status", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VersionStatus {
    /// Queued for a compiler.
    Pending,
    /// A compiler is building it.
    Compiling,
    /// Built: it can run.
    Ready,
    /// The build failed; the version's compile error says why.
    Failed,
}

impl VersionStatus {
    /// Every status, in the order of a version's life.
    pub const ALL: [VersionStatus; 4] = [
        VersionStatus::Pending,
        VersionStatus::Compiling,
        VersionStatus::Ready,
        VersionStatus::Failed,
    ];

    /// The wire and database name, e.g. `READY`.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionStatus::Pending => "PENDING",
            VersionStatus::Compiling => "COMPILING",
            VersionStatus::Ready => "READY",
            VersionStatus::Failed => "FAILED",
        }
    }

    /// Whether the build is over (READY or FAILED).
    pub fn is_built(self) -> bool {
        matches!(self, VersionStatus::Ready | VersionStatus::Failed)
    }
}

/// Where an execution is.
// Ordered, for maps by status in the order of an execution's life.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Type, ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "execution_status", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    /// Waiting for an executor.
    Queued,
    /// An executor has claimed it.
    Running,
    /// The handler returned an output.
    Succeeded,
    /// It ended without an output; the error says why.
    Failed,
    /// Someone cancelled it.
    Cancelled,
}

impl ExecutionStatus {
    /// Every status, in the order of an execution's life.
    pub const ALL: [ExecutionStatus; 5] = [
        ExecutionStatus::Queued,
        ExecutionStatus::Running,
        ExecutionStatus::Succeeded,
        ExecutionStatus::Failed,
        ExecutionStatus::Cancelled,
    ];

    /// The wire and database name, e.g. `SUCCEEDED`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Queued => "QUEUED",
            ExecutionStatus::Running => "RUNNING",
            ExecutionStatus::Succeeded => "SUCCEEDED",
            ExecutionStatus::Failed => "FAILED",
            ExecutionStatus::Cancelled => "CANCELLED",
        }
    }

    /// Whether it has ended (nothing about it changes any more).
    pub fn is_finished(self) -> bool {
        !matches!(self, ExecutionStatus::Queued | ExecutionStatus::Running)
    }
}

/// A `status` filter that names no status of its kind.
#[derive(Debug, thiserror::Error)]
#[error("`status` {given:?} is not one of {expected}")]
pub struct UnknownStatus {
    given: String,
    expected: String,
}

macro_rules! names_and_parsing {
    ($status:ty) => {
        impl fmt::Display for $status {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $status {
            type Err = UnknownStatus;

            fn from_str(name: &str) -> Result<Self, Self::Err> {
                by_name(&<$status>::ALL, name).ok_or_else(|| UnknownStatus {
                    given: name.to_owned(),
                    expected: names(&<$status>::ALL),
                })
            }
        }
    };
}

names_and_parsing!(VersionStatus);
names_and_parsing!(ExecutionStatus);

#[cfg(test)]
mod tests {
    use sqlx::PgPool;

    use super::*;
    use crate::language::tests::agrees_with_the_database;

    #[sqlx::test(migrator = "crate::db::MIGRATOR")]
    async fn the_statuses_are_the_database_types(pool: PgPool) {
        agrees_with_the_database(&pool, "version_status", &VersionStatus::ALL).await;
        agrees_with_the_database(&pool, "execution_status", &ExecutionStatus::ALL).await;
    }

    #[test]
    fn an_unknown_status_says_which_there_are() {
        let error = "DONE".parse::<ExecutionStatus>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "`status` \"DONE\" is not one of QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED"
        );
    }
}
