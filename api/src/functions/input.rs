//! What clients send to create or change a function, and the checks that turn
//! it into something we store. Every refusal names the field and the rule.

use std::collections::BTreeMap;

use plat_common::dependencies::Dependencies;
use plat_common::language::UnknownLanguage;
use plat_common::{function_name, ExecutionConfig, Language, RetryPolicy};
use serde::Deserialize;
use uuid::Uuid;

use crate::config::ApiConfig;
use crate::error::Error;

const MAX_DESCRIPTION_CHARS: usize = 2000;
const MAX_TAGS: usize = 20;
const MAX_TAG_CHARS: usize = 64;
const MAX_ENV_VARS: usize = 100;
const MAX_ENV_BYTES: usize = 32 * 1024;
/// Highest `executionConfig.maxConcurrency`: far above any fleet, and an
/// `integer` in PostgreSQL.
const MAX_CONCURRENCY: u64 = 1_000_000;

/// `POST /functions`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateFunction {
    pub name: String,
    /// Parsed by [`language`], which says which languages there are.
    #[schema(value_type = Language)]
    pub language: String,
    pub source: String,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub execution_config: Option<ExecutionConfigInput>,
    /// Who may see and run it; both empty (the default): everyone.
    #[serde(default)]
    pub allowed_users: Vec<Uuid>,
    #[serde(default)]
    pub allowed_groups: Vec<Uuid>,
    /// The environment whose variables its runs get.
    pub environment_id: Option<Uuid>,
    /// The first version's semantic version; `0.1.0` if not sent.
    pub version: Option<String>,
    /// Where to POST each finished execution; the answer then carries the
    /// signing secret, once, as `webhookSecret` (docs/triggers.md).
    pub webhook_url: Option<String>,
    /// Crates (Rust) or npm packages (TypeScript) the function uses:
    /// `{"regex": "1", "chrono": {"version": "0.4", "features": ["serde"]}}`
    /// (docs/dependencies.md).
    #[schema(value_type = Option<BTreeMap<String, plat_common::dependencies::DependencySpec>>)]
    pub dependencies: Option<Dependencies>,
}

/// `PUT /functions/{id}`: every field optional; a new `source`,
/// `executionConfig` or `version` makes a new version.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateFunction {
    pub source: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub execution_config: Option<ExecutionConfigInput>,
    pub allowed_users: Option<Vec<Uuid>>,
    pub allowed_groups: Option<Vec<Uuid>>,
    /// `null` detaches the environment; absent leaves it as it is.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Uuid>)]
    pub environment_id: Option<Option<Uuid>>,
    /// The new version's semantic version; the next patch if not sent.
    pub version: Option<String>,
    /// `null` removes the webhook; absent leaves it. A function's first
    /// URL gets it a signing secret, answered once as `webhookSecret`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub webhook_url: Option<Option<String>>,
    /// The new version's whole dependency set (`{}` for none); absent keeps
    /// the newest version's. Makes a new version.
    #[schema(value_type = Option<BTreeMap<String, plat_common::dependencies::DependencySpec>>)]
    pub dependencies: Option<Dependencies>,
}

impl UpdateFunction {
    /// The fields sent, by their API names, in the order of the docs.
    pub fn sent(&self) -> Vec<&'static str> {
        crate::audit::sent_fields([
            ("source", self.source.is_some()),
            ("executionConfig", self.execution_config.is_some()),
            ("version", self.version.is_some()),
            ("dependencies", self.dependencies.is_some()),
            ("description", self.description.is_some()),
            ("tags", self.tags.is_some()),
            ("allowedUsers", self.allowed_users.is_some()),
            ("allowedGroups", self.allowed_groups.is_some()),
            ("environmentId", self.environment_id.is_some()),
            ("webhookUrl", self.webhook_url.is_some()),
        ])
    }

    /// Whether the update makes a new version (a new source, config or
    /// semantic version) rather than changing the function in place.
    pub fn makes_a_version(&self) -> bool {
        self.source.is_some()
            || self.execution_config.is_some()
            || self.version.is_some()
            || self.dependencies.is_some()
    }

    /// Whether it changes who may see and run the function.
    pub fn changes_permissions(&self) -> bool {
        self.allowed_users.is_some() || self.allowed_groups.is_some()
    }

    /// Checks every field that needs no lookup (garbage is a 400 whatever
    /// the function); returns the requested semantic version, if any.
    pub fn check(&self, config: &ApiConfig) -> Result<Option<semver::Version>, Error> {
        if self.sent().is_empty() {
            return Err(Error::BadRequest(
                "nothing to update: send at least one of `source`, `executionConfig`, `version`, `dependencies`, `description`, `tags`, `allowedUsers`, `allowedGroups`, `environmentId`, `webhookUrl`".to_owned(),
            ));
        }
        if let Some(source) = &self.source {
            check_source(source, config)?;
        }
        check_description(self.description.as_deref())?;
        if let Some(tags) = &self.tags {
            check_tags(tags)?;
        }
        self.version
            .as_deref()
            .map(super::versions::parse_semver)
            .transpose()
    }
}

/// Tells a field sent as `null` (`Some(None)`) from one not sent (`None`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A partial execution config: omitted fields keep their current (or
/// default) value.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecutionConfigInput {
    pub timeout_ms: Option<u64>,
    pub memory_limit_mb: Option<u64>,
    pub environment_variables: Option<BTreeMap<String, String>>,
    /// Most runs RUNNING at once across all executors; `null` removes the
    /// limit, omitted keeps the current one.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, minimum = 1)]
    pub max_concurrency: Option<Option<u64>>,
    /// Runs again after a handler error or a timeout; `null` removes the
    /// policy, omitted keeps the current one.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<crate::openapi::RetryPolicy>)]
    pub retry: Option<Option<RetryInput>>,
}

/// `executionConfig.retry` as sent: `maxAttempts` is required, the backoff
/// has defaults.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryInput {
    pub max_attempts: u64,
    pub backoff_ms: Option<u64>,
    pub backoff_multiplier: Option<f64>,
}

/// Most runs of one execution a retry policy may ask for: enough for a
/// flaky dependency, not enough to turn one call into a load test.
pub const MAX_RETRY_ATTEMPTS: u64 = 10;
/// Longest first backoff: one hour, like the cap on every wait.
pub const MAX_RETRY_BACKOFF_MS: u64 = 3_600_000;
/// Largest growth factor between two waits.
pub const MAX_RETRY_MULTIPLIER: f64 = 10.0;

/// Checks a retry policy against the bounds and fills its defaults (one
/// second, doubling).
fn retry_policy(input: RetryInput) -> Result<RetryPolicy, Error> {
    let RetryInput {
        max_attempts,
        backoff_ms,
        backoff_multiplier,
    } = input;
    if !(1..=MAX_RETRY_ATTEMPTS).contains(&max_attempts) {
        return Err(Error::BadRequest(format!(
            "`executionConfig.retry.maxAttempts` must be between 1 and {MAX_RETRY_ATTEMPTS} (the first run included), got {max_attempts}"
        )));
    }
    let backoff_ms = backoff_ms.unwrap_or(1000);
    if backoff_ms > MAX_RETRY_BACKOFF_MS {
        return Err(Error::BadRequest(format!(
            "`executionConfig.retry.backoffMs` must be between 0 and {MAX_RETRY_BACKOFF_MS}, got {backoff_ms}"
        )));
    }
    let backoff_multiplier = backoff_multiplier.unwrap_or(2.0);
    if !(1.0..=MAX_RETRY_MULTIPLIER).contains(&backoff_multiplier) {
        return Err(Error::BadRequest(format!(
            "`executionConfig.retry.backoffMultiplier` must be between 1 and {MAX_RETRY_MULTIPLIER}, got {backoff_multiplier}"
        )));
    }
    Ok(RetryPolicy {
        max_attempts: max_attempts as u32,
        backoff_ms: backoff_ms as u32,
        backoff_multiplier,
    })
}

pub fn check_name(name: &str) -> Result<(), Error> {
    if function_name::is_valid(name) {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "`name` must be {}; got {name:?}",
            function_name::RULE
        )))
    }
}

pub fn language(name: &str) -> Result<Language, Error> {
    name.parse()
        .map_err(|unknown: UnknownLanguage| Error::BadRequest(unknown.to_string()))
}

pub fn check_source(source: &str, config: &ApiConfig) -> Result<(), Error> {
    if source.len() > config.max_source_bytes {
        return Err(Error::PayloadTooLarge(format!(
            "`source` is {} bytes; the limit is {} bytes",
            source.len(),
            config.max_source_bytes
        )));
    }
    if source.trim().is_empty() {
        return Err(Error::BadRequest("`source` is empty".to_owned()));
    }
    no_nul("source", source)
}

/// PostgreSQL text cannot hold NUL characters; say so rather than fail later.
fn no_nul(field: &str, text: &str) -> Result<(), Error> {
    if text.contains('\0') {
        Err(Error::BadRequest(format!(
            "`{field}` contains a NUL character"
        )))
    } else {
        Ok(())
    }
}

pub fn check_description(description: Option<&str>) -> Result<(), Error> {
    match description {
        Some(d) if d.chars().count() > MAX_DESCRIPTION_CHARS => Err(Error::BadRequest(format!(
            "`description` is longer than {MAX_DESCRIPTION_CHARS} characters"
        ))),
        Some(d) => no_nul("description", d),
        None => Ok(()),
    }
}

pub fn check_tags(tags: &[String]) -> Result<(), Error> {
    if tags.len() > MAX_TAGS {
        return Err(Error::BadRequest(format!(
            "at most {MAX_TAGS} `tags` are allowed"
        )));
    }
    if let Some(bad) = tags
        .iter()
        .find(|t| t.is_empty() || t.chars().count() > MAX_TAG_CHARS || t.contains('\0'))
    {
        return Err(Error::BadRequest(format!(
            "each tag must be 1 to {MAX_TAG_CHARS} characters, without NUL; got {bad:?}"
        )));
    }
    Ok(())
}

/// Applies `input` on top of `base` and checks the result against the
/// operator's caps.
pub fn execution_config(
    base: ExecutionConfig,
    input: Option<ExecutionConfigInput>,
    config: &ApiConfig,
) -> Result<ExecutionConfig, Error> {
    let input = input.unwrap_or_default();
    let mut result = base;
    if let Some(timeout_ms) = input.timeout_ms {
        if timeout_ms == 0 || timeout_ms > u64::from(config.max_timeout_ms) {
            return Err(Error::BadRequest(format!(
                "`executionConfig.timeoutMs` must be between 1 and {}, got {timeout_ms}",
                config.max_timeout_ms
            )));
        }
        result.timeout_ms = timeout_ms as u32;
    }
    if let Some(memory) = input.memory_limit_mb {
        if memory == 0 || memory > u64::from(config.max_memory_mb) {
            return Err(Error::BadRequest(format!(
                "`executionConfig.memoryLimitMb` must be between 1 and {}, got {memory}",
                config.max_memory_mb
            )));
        }
        result.memory_limit_mb = memory as u32;
    }
    if let Some(vars) = input.environment_variables {
        check_variables("environmentVariables", &vars)?;
        result.environment_variables = vars;
    }
    if let Some(max) = input.max_concurrency {
        result.max_concurrency = match max {
            None => None,
            Some(n @ 1..=MAX_CONCURRENCY) => Some(n as u32),
            Some(n) => {
                return Err(Error::BadRequest(format!(
                    "`executionConfig.maxConcurrency` must be between 1 and {MAX_CONCURRENCY} (or null for no limit), got {n}"
                )))
            }
        };
    }
    if let Some(retry) = input.retry {
        result.retry = retry.map(retry_policy).transpose()?;
    }
    Ok(result)
}

/// Environment variable names and values, as `field` (a function's
/// `environmentVariables`, an environment's `variables`).
pub fn check_variables(field: &str, vars: &BTreeMap<String, String>) -> Result<(), Error> {
    if vars.len() > MAX_ENV_VARS {
        return Err(Error::BadRequest(format!(
            "at most {MAX_ENV_VARS} `{field}` are allowed"
        )));
    }
    let total: usize = vars.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_ENV_BYTES {
        return Err(Error::BadRequest(format!(
            "`{field}` add up to more than {MAX_ENV_BYTES} bytes"
        )));
    }
    for (name, value) in vars {
        let valid_name = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(Error::BadRequest(format!(
                "environment variable name {name:?} must be letters, digits and `_`, not starting with a digit"
            )));
        }
        if value.contains('\0') || name.contains('\0') {
            return Err(Error::BadRequest(format!(
                "environment variable {name} contains a NUL character"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(body: serde_json::Value) -> UpdateFunction {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn an_update_names_what_it_sends_and_what_kind_of_change_it_is() {
        let config = ApiConfig::default();
        let empty = update(serde_json::json!({}));
        let refused = empty.check(&config).unwrap_err().to_string();
        assert!(
            refused.starts_with("nothing to update: send at least one of"),
            "{refused}"
        );

        let in_place = update(serde_json::json!({"tags": ["a"], "allowedUsers": []}));
        assert_eq!(in_place.sent(), ["tags", "allowedUsers"]);
        assert!(!in_place.makes_a_version());
        assert!(in_place.changes_permissions());

        let versioned = update(serde_json::json!({"version": "2.0.0", "environmentId": null}));
        assert_eq!(versioned.sent(), ["version", "environmentId"]);
        assert!(versioned.makes_a_version());
        assert!(!versioned.changes_permissions());
        let semver = versioned.check(&config).unwrap().unwrap();
        assert_eq!(semver.to_string(), "2.0.0");
    }

    #[test]
    fn a_partial_config_keeps_the_other_fields_and_respects_caps() {
        let config = ApiConfig::default();
        let input = ExecutionConfigInput {
            timeout_ms: Some(500),
            ..Default::default()
        };

        let merged = execution_config(ExecutionConfig::default(), Some(input), &config).unwrap();

        assert_eq!(merged.timeout_ms, 500);
        assert_eq!(merged.memory_limit_mb, 128);
        let too_much = ExecutionConfigInput {
            memory_limit_mb: Some(4096),
            ..Default::default()
        };
        assert!(execution_config(ExecutionConfig::default(), Some(too_much), &config).is_err());
    }

    #[test]
    fn max_concurrency_is_at_least_one_and_null_removes_it() {
        let config = ApiConfig::default();
        let with = |max| ExecutionConfigInput {
            max_concurrency: Some(max),
            ..Default::default()
        };

        let limited = execution_config(ExecutionConfig::default(), Some(with(Some(3))), &config);
        let limited = limited.unwrap();
        assert_eq!(limited.max_concurrency, Some(3));
        let kept = execution_config(limited.clone(), None, &config).unwrap();
        assert_eq!(kept.max_concurrency, Some(3));
        let removed = execution_config(limited, Some(with(None)), &config).unwrap();
        assert_eq!(removed.max_concurrency, None);
        assert!(
            execution_config(ExecutionConfig::default(), Some(with(Some(0))), &config).is_err()
        );
    }

    #[test]
    fn a_retry_policy_gets_defaults_is_bounded_and_null_removes_it() {
        let config = ApiConfig::default();
        let with = |retry: serde_json::Value| -> ExecutionConfigInput {
            serde_json::from_value(serde_json::json!({ "retry": retry })).unwrap()
        };

        let retried = execution_config(
            ExecutionConfig::default(),
            Some(with(serde_json::json!({"maxAttempts": 3}))),
            &config,
        )
        .unwrap();
        assert_eq!(
            retried.retry,
            Some(RetryPolicy {
                max_attempts: 3,
                backoff_ms: 1000,
                backoff_multiplier: 2.0
            })
        );
        let kept = execution_config(retried.clone(), None, &config).unwrap();
        assert_eq!(kept.retry, retried.retry);
        let removed = execution_config(retried, Some(with(serde_json::Value::Null)), &config);
        assert_eq!(removed.unwrap().retry, None);
        for bad in [
            serde_json::json!({"maxAttempts": 0}),
            serde_json::json!({"maxAttempts": 11}),
            serde_json::json!({"maxAttempts": 2, "backoffMs": 3_600_001}),
            serde_json::json!({"maxAttempts": 2, "backoffMultiplier": 0.5}),
        ] {
            let refused = execution_config(ExecutionConfig::default(), Some(with(bad)), &config);
            assert!(refused.is_err());
        }
    }

    #[test]
    fn environment_variable_names_must_be_portable() {
        let config = ApiConfig::default();
        let input = ExecutionConfigInput {
            environment_variables: Some(BTreeMap::from([("1BAD".to_owned(), "x".to_owned())])),
            ..Default::default()
        };

        assert!(execution_config(ExecutionConfig::default(), Some(input), &config).is_err());
    }
}
