//! The rule for function names, shared by the API (which enforces it) and
//! the `plat` command (which checks a manifest before sending it).

/// The longest function name, in characters.
pub const MAX_CHARS: usize = 64;

/// How the rule reads in error messages.
pub const RULE: &str = "1 to 64 characters of letters, digits, `-`, `_` or `.`, starting with a letter or digit, and not a UUID";

/// Whether `name` may name a function. A name that reads as a UUID is
/// refused: functions are addressed by id or by name, and the two must never
/// collide.
pub fn is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_CHARS
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && uuid::Uuid::try_parse(name).is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_rule() {
        for good in ["hello", "a", "my-fn_2.v1", "9lives", &"x".repeat(MAX_CHARS)] {
            assert!(is_valid(good), "{good}");
        }
        for bad in [
            "",
            "-x",
            "with space",
            "ünï",
            &"x".repeat(MAX_CHARS + 1),
            "0190a0e4-7c3e-7000-8000-000000000000",
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
    }
}
