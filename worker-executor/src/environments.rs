//! The environments functions reference, decrypted and cached per worker.
//!
//! The claim returns each job's environment id and its current revision (an
//! environment's revision grows with every change), so a cached copy is used
//! only while it is still the newest: a changed value reaches the very next
//! run, and an unchanged one costs no query.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use plat_common::secrets::{SecretsError, SecretsKey};
use sqlx::PgPool;
use uuid::Uuid;

/// An environment's variables, ready to hand to a run.
pub(crate) type Variables = Arc<Vec<(String, String)>>;

#[derive(Debug, thiserror::Error)]
pub(crate) enum EnvironmentError {
    /// This worker has no `PLAT_SECRETS_KEY`: the operator's to fix.
    #[error("the function's environment cannot be read: this executor has no secrets key (set PLAT_SECRETS_KEY to the API's)")]
    NoKey,
    #[error("the function's environment cannot be read: {0}")]
    Secrets(#[from] SecretsError),
    /// Reading it failed, or it changed under us: worth a retry.
    #[error("reading the environment failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("environment {0} changed while it was read")]
    Changed(Uuid),
}

pub(crate) struct Environments {
    key: Option<SecretsKey>,
    /// id → (revision, variables).
    cached: Mutex<HashMap<Uuid, (i64, Variables)>>,
}

impl Environments {
    pub(crate) fn new(key: Option<SecretsKey>) -> Self {
        Self {
            key,
            cached: Mutex::default(),
        }
    }

    /// The variables of environment `id` at `revision` (what the claim saw).
    pub(crate) async fn get(
        &self,
        pool: &PgPool,
        id: Uuid,
        revision: i64,
    ) -> Result<Variables, EnvironmentError> {
        if let Some((cached_revision, variables)) = self.cached.lock().get(&id) {
            if *cached_revision >= revision {
                return Ok(variables.clone());
            }
        }
        let key = self.key.as_ref().ok_or(EnvironmentError::NoKey)?;
        let row = sqlx::query!(
            "select revision, variables from environments where id = $1",
            id
        )
        .fetch_optional(pool)
        .await?;
        // Deleted since the claim (only possible once no function uses it):
        // the retry's claim will see the function's new reference.
        let row = row.ok_or(EnvironmentError::Changed(id))?;
        let revision = row.revision;
        let variables: Variables = Arc::new(key.open(id, &row.variables)?.into_iter().collect());
        let mut cached = self.cached.lock();
        let newest = cached
            .get(&id)
            .is_none_or(|(cached_revision, _)| *cached_revision < revision);
        if newest {
            cached.insert(id, (revision, variables.clone()));
        }
        Ok(variables)
    }
}

/// The run's environment: the environment's variables, then the function's
/// own `environmentVariables`, which win on a name both have.
pub(crate) fn merge(
    environment: &[(String, String)],
    own: &[(String, String)],
) -> Vec<(String, String)> {
    let mut merged: Vec<(String, String)> = environment
        .iter()
        .filter(|(name, _)| !own.iter().any(|(own_name, _)| own_name == name))
        .cloned()
        .collect();
    merged.extend(own.iter().cloned());
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_functions_own_variables_win_over_the_environments() {
        let merged = merge(
            &vars(&[("REGION", "eu"), ("TOKEN", "from-env")]),
            &vars(&[("TOKEN", "own")]),
        );
        assert_eq!(merged, vars(&[("REGION", "eu"), ("TOKEN", "own")]));
    }
}
