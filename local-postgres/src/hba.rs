//! pg_hba.conf, the server's rules for who may connect and how: clusters
//! made by older Plat versions trusted every local user, and are turned
//! into ones that ask for the password.

use std::path::Path;

use crate::{io, PostgresError};

/// Whether pg_hba.conf lets anyone in without a password (`trust`, as
/// older Plat versions made it).
pub(crate) fn trusts_anyone(data_dir: &Path) -> Result<bool, PostgresError> {
    let hba = data_dir.join("pg_hba.conf");
    let text = std::fs::read_to_string(&hba).map_err(io(format!("reading {}", hba.display())))?;
    Ok(text.lines().any(|line| method(line) == Some("trust")))
}

/// The authentication method of a pg_hba.conf rule: its last field.
pub(crate) fn method(line: &str) -> Option<&str> {
    let rule = line.split('#').next().unwrap_or_default();
    rule.split_whitespace().last()
}

/// pg_hba.conf with every `trust` rule asking for a SCRAM password instead.
pub(crate) fn without_trust(text: &str) -> String {
    let mut rewritten = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        let rule = line.split('#').next().unwrap_or_default();
        match (method(line), rule.rfind("trust")) {
            (Some("trust"), Some(at)) => {
                rewritten.push_str(&line[..at]);
                rewritten.push_str("scram-sha-256");
                rewritten.push_str(&line[at + "trust".len()..]);
            }
            _ => rewritten.push_str(line),
        }
        rewritten.push('\n');
    }
    rewritten
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_trust_rules_are_rewritten() {
        let hba = "# TYPE DATABASE USER ADDRESS METHOD\n\
                   local all all trust\n\
                   host all all 127.0.0.1/32 trust # trust me\n\
                   host all all ::1/128 scram-sha-256\n";

        let rewritten = without_trust(hba);

        assert_eq!(
            rewritten,
            "# TYPE DATABASE USER ADDRESS METHOD\n\
             local all all scram-sha-256\n\
             host all all 127.0.0.1/32 scram-sha-256 # trust me\n\
             host all all ::1/128 scram-sha-256\n"
        );
    }
}
