//! An environment's variables as clients send them, and the write-only
//! secrets among them (docs/security.md, "Environments and secrets").
//!
//! A variable is sent as its value (`"eu"`), or as
//! `{"value": "...", "secret": true}`. A secret's value is write-only: it
//! reaches runs like any other, but no endpoint returns it, to admins
//! neither; views show only whether it is set. Sending a secret without a
//! value (`{"secret": true}`) keeps the value it has (so a form that never
//! saw the value can send the environment back unchanged), or, if it has
//! none, declares it unset: runs do not get an unset secret.

use std::collections::{BTreeMap, BTreeSet};

use plat_common::secrets::Variables;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::functions::input::check_variables;

/// One variable as a client sends it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(super) enum VariableInput {
    /// A plain (readable) variable's value.
    Plain(String),
    Marked(MarkedVariable),
}

/// A variable with its flags: `{"value": "...", "secret": true}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct MarkedVariable {
    /// Leave it out, for a secret, to keep the value it has.
    value: Option<String>,
    /// Write-only: runs get the value, no endpoint returns it.
    #[serde(default)]
    secret: bool,
}

/// What to store: the values (sealed together, secret or not) and the
/// names of the secrets (set or not).
#[derive(Debug, Default)]
pub(super) struct Resolved {
    pub values: Variables,
    pub secrets: Vec<String>,
}

/// Turns what a client sent into what to store. `current` holds the values
/// the environment has now (empty for a new one): a secret sent without a
/// value keeps its value from there.
pub(super) fn resolve(
    sent: BTreeMap<String, VariableInput>,
    current: &Variables,
) -> Result<Resolved> {
    let mut resolved = Resolved::default();
    // Every name, with its value or "" when unset, for the shared checks.
    let mut checked = BTreeMap::new();
    for (name, input) in sent {
        let (value, secret) = match input {
            VariableInput::Plain(value) => (Some(value), false),
            VariableInput::Marked(MarkedVariable { value, secret }) => (value, secret),
        };
        let value = match (value, secret) {
            (Some(value), _) => Some(value),
            (None, true) => current.get(&name).cloned(),
            // Keeping a value but making it readable would reveal a
            // secret's value: a readable variable needs its value sent.
            (None, false) => {
                return Err(Error::BadRequest(format!(
                    "variable {name} needs a `value`; only a secret may leave it out (to keep its current value)"
                )))
            }
        };
        checked.insert(name.clone(), value.clone().unwrap_or_default());
        if secret {
            resolved.secrets.push(name.clone());
        }
        if let Some(value) = value {
            resolved.values.insert(name, value);
        }
    }
    check_variables("variables", &checked)?;
    Ok(resolved)
}

/// A secret as views show it: its name and whether it has a value.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct SecretView {
    name: String,
    set: bool,
}

/// What a view shows of the variables: every name, the secrets with
/// whether each is set, and (when `with_values`) the values of the others.
pub(super) struct Shown {
    pub names: Vec<String>,
    pub secrets: Vec<SecretView>,
    pub values: Option<BTreeMap<String, String>>,
}

pub(super) fn show(values: Variables, secrets: &[String], with_values: bool) -> Shown {
    let secret: BTreeSet<&str> = secrets.iter().map(String::as_str).collect();
    let mut names: BTreeSet<String> = values.keys().cloned().collect();
    names.extend(secrets.iter().cloned());
    let secrets = secret
        .iter()
        .map(|name| SecretView {
            name: (*name).to_owned(),
            set: values.contains_key(*name),
        })
        .collect();
    let values = with_values.then(|| {
        values
            .into_iter()
            .filter(|(name, _)| !secret.contains(name.as_str()))
            .collect()
    });
    Shown {
        names: names.into_iter().collect(),
        secrets,
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(json: serde_json::Value) -> BTreeMap<String, VariableInput> {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_secret_sent_without_a_value_keeps_its_value_or_stays_unset() {
        let current = Variables::from([("TOKEN".to_owned(), "old".to_owned())]);

        let resolved = resolve(
            sent(serde_json::json!({
                "TOKEN": { "secret": true },
                "NEW": { "secret": true },
                "REGION": "eu",
            })),
            &current,
        )
        .unwrap();

        assert_eq!(
            resolved.values.get("TOKEN").map(String::as_str),
            Some("old")
        );
        assert_eq!(resolved.values.get("NEW"), None, "unset");
        assert_eq!(resolved.secrets, ["NEW", "TOKEN"]);
        let shown = show(resolved.values, &resolved.secrets, true);
        assert_eq!(shown.names, ["NEW", "REGION", "TOKEN"]);
        assert_eq!(
            shown.values.unwrap(),
            BTreeMap::from([("REGION".to_owned(), "eu".to_owned())])
        );
    }

    #[test]
    fn a_readable_variable_needs_its_value() {
        let current = Variables::from([("TOKEN".to_owned(), "old".to_owned())]);

        assert!(resolve(sent(serde_json::json!({ "TOKEN": {} })), &current).is_err());
        assert!(resolve(sent(serde_json::json!({ "1BAD": "x" })), &current).is_err());
    }
}
