//! How deeply a JSON text nests, checked before PostgreSQL parses it.
//!
//! A `serde_json::value::RawValue` is validated without serde_json's
//! recursion limit, and PostgreSQL's jsonb parser recurses once per level:
//! a value nested a few hundred thousand deep fails the statement that
//! stores it with SQLSTATE 54001 ("stack depth limit exceeded"). So inputs
//! (in the API) and outputs (in the executor) are measured first.

/// The deepest nesting of arrays and objects a stored value may have: the
/// API's limit for an execution's input, and the executor's for its output.
pub const MAX_JSON_DEPTH: usize = 128;

/// The deepest nesting of arrays and objects in a JSON text, counting only
/// brackets outside strings. Validity is checked separately.
pub fn nesting_depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_depth_counts_brackets_outside_strings_only() {
        assert_eq!(nesting_depth(br#"1"#), 0);
        assert_eq!(nesting_depth(br#"{"a": [1, {"b": []}]}"#), 4);
        assert_eq!(nesting_depth(br#"["[[[[", "\"[[["]"#), 1);
    }
}
