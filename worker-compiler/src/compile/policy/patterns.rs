//! Forbidden source patterns: each match is reported at its line and column
//! in the user's file, in the shape the compilers report errors
//! (`handler.rs:3:5: error: …` with the line and a caret), so the CLI points
//! at it in the user's own file like any other compile error.

use plat_common::Language;

use super::file::ForbiddenPattern;

/// The name the user's source has in messages, per language.
fn user_file(language: Language) -> &'static str {
    match language {
        Language::Rust => "handler.rs",
        Language::TypeScript => "handler.ts",
    }
}

/// One message per pattern that matches `source` (at its first match), in
/// the policy's order; empty when none does.
pub(super) fn find(language: Language, patterns: &[ForbiddenPattern], source: &str) -> Vec<String> {
    patterns
        .iter()
        .filter_map(|forbidden| {
            let found = forbidden.pattern.0.find(source)?;
            Some(message_at(
                user_file(language),
                source,
                found.start(),
                &format!(
                    "{} (the operator's dependency policy forbids `{}` in sources)",
                    forbidden.message,
                    forbidden.pattern.0.as_str()
                ),
            ))
        })
        .collect()
}

/// `FILE:LINE:COL: error: MESSAGE`, then the line and a caret under the
/// column; line and column count from 1, the column in characters.
fn message_at(file: &str, source: &str, offset: usize, message: &str) -> String {
    let line_start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = source[offset..]
        .find('\n')
        .map_or(source.len(), |i| offset + i);
    let line_number = source[..line_start].matches('\n').count() + 1;
    let before = &source[line_start..offset];
    let column = before.chars().count() + 1;
    let text = source[line_start..line_end].trim_end_matches('\r');
    // Tabs keep their width in the caret line so the caret lines up.
    let pad: String = before
        .chars()
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let number = line_number.to_string();
    format!(
        "{file}:{line_number}:{column}: error: {message}\n{number} | {text}\n{} | {pad}^",
        " ".repeat(number.len())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::policy::file;

    fn patterns(toml: &str) -> Vec<ForbiddenPattern> {
        file::parse(toml, None).expect("parses").forbidden.rust
    }

    #[test]
    fn a_match_is_reported_at_its_line_and_column_with_the_operators_message() {
        let forbidden = patterns(
            "[[forbidden.rust]]\npattern = '\\bstd::process\\b'\nmessage = \"functions may not start processes\"\n",
        );
        let source = "use serde_json::Value;\n\nfn run() {\n\tlet é = std::process::id();\n}\n";

        let found = find(Language::Rust, &forbidden, source);

        assert_eq!(
            found,
            [
                "handler.rs:4:10: error: functions may not start processes (the operator's dependency \
                 policy forbids `\\bstd::process\\b` in sources)\n4 | \tlet é = std::process::id();\n  | \t        ^"
            ]
        );
        assert!(find(Language::Rust, &forbidden, "fn main() {}\n").is_empty());
    }

    #[test]
    fn each_pattern_reports_its_first_match_in_the_languages_file() {
        let rules = file::parse(
            "[[forbidden.typescript]]\npattern = 'eval\\s*\\('\nmessage = \"no eval\"\n\n\
             [[forbidden.typescript]]\npattern = '^import .* from \"node:'\nmessage = \"no Node built-ins\"\n",
            None,
        )
        .expect("parses");
        let source =
            "import x from \"node:fs\";\nconst a = eval (\"1\");\nconst b = eval(\"2\");\n";

        let found = find(Language::TypeScript, &rules.forbidden.typescript, source);

        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("handler.ts:2:11: error: no eval"),
            "{}",
            found[0]
        );
        assert!(
            found[1].starts_with("handler.ts:1:1: error: no Node built-ins"),
            "{}",
            found[1]
        );
        // The Rust patterns do not apply to TypeScript, nor these to Rust.
        assert!(rules.forbidden.rust.is_empty());
    }
}
