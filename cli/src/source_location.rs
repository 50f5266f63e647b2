//! Pointing at the line a compile error names, in the developer's own file.
//!
//! The compilers name the user's source `handler.rs` / `handler.ts` (see
//! worker-compiler/src/compile/diagnostics.rs and the TypeScript
//! compiler's `handler.ts:L:C: error: …`), whatever the file is called
//! locally: rustc writes ` --> handler.rs:3:17`, the TypeScript compiler
//! `handler.ts:2:9: error: …`, and a signature error `(see handler.rs:3:1)`.
//! The first such position is shown again as the local file's line with a
//! caret under the column, so an editor or a terminal can jump to it.

/// A 1-based line and column in the user's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// The first `FILE:LINE:COLUMN` in `compile_error` naming `file_name`.
pub fn first_position(compile_error: &str, file_name: &str) -> Option<Position> {
    let needle = format!("{file_name}:");
    compile_error.match_indices(&needle).find_map(|(at, _)| {
        // `myhandler.rs:` is not `handler.rs:`.
        let before = compile_error[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '/') {
            return None;
        }
        let rest = &compile_error[at + needle.len()..];
        let (line, rest) = leading_number(rest)?;
        let (column, _) = leading_number(rest.strip_prefix(':')?)?;
        (line > 0).then_some(Position {
            line,
            column: column.max(1),
        })
    })
}

fn leading_number(text: &str) -> Option<(usize, &str)> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    Some((text[..end].parse().ok()?, &text[end..]))
}

/// `--> PATH:L:C`, then the line of `source` and a caret under the column,
/// in rustc's layout. `None` when the source has no such line.
pub fn excerpt(source: &str, shown_path: &str, position: Position) -> Option<String> {
    let text = source
        .lines()
        .nth(position.line - 1)?
        .trim_end_matches('\r');
    let number = position.line.to_string();
    let gutter = " ".repeat(number.len());
    // Tabs keep their width on the caret line so the caret lines up.
    let pad: String = text
        .chars()
        .take(position.column - 1)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    Some(format!(
        "{gutter}--> {shown_path}:{}:{}\n{gutter} |\n{number} | {text}\n{gutter} | {pad}^",
        position.line, position.column
    ))
}

/// The compile error as the compiler wrote it, followed by the excerpt of
/// the local file at its first position (when it names one).
pub fn annotate(
    compile_error: &str,
    compiler_file: &str,
    source: &str,
    shown_path: &str,
) -> String {
    let mut text = compile_error.trim_end().to_owned();
    if let Some(excerpt) =
        first_position(compile_error, compiler_file).and_then(|at| excerpt(source, shown_path, at))
    {
        text.push_str("\n\nin your file:\n");
        text.push_str(&excerpt);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUSTC: &str = "error[E0308]: mismatched types\n --> handler.rs:3:18\n  |\n3 |     let x: u32 = \"no\";\n  |            ---   ^^^^ expected `u32`, found `&str`";

    #[test]
    fn finds_rustcs_position() {
        assert_eq!(
            first_position(RUSTC, "handler.rs"),
            Some(Position {
                line: 3,
                column: 18
            })
        );
    }

    #[test]
    fn finds_the_typescript_compilers_position() {
        let error = "handler.ts:2:9: error: Unexpected token\n2 | let b = ;\n  |         ^";

        assert_eq!(
            first_position(error, "handler.ts"),
            Some(Position { line: 2, column: 9 })
        );
    }

    #[test]
    fn ignores_other_files_and_messages_without_a_position() {
        assert_eq!(
            first_position("error: in myhandler.rs:3:4", "handler.rs"),
            None
        );
        assert_eq!(
            first_position("error: handler.rs must define", "handler.rs"),
            None
        );
        assert_eq!(
            first_position("  rustc: mismatched (see handler.rs:7:1)", "handler.rs"),
            Some(Position { line: 7, column: 1 })
        );
    }

    #[test]
    fn the_excerpt_puts_a_caret_under_the_column() {
        let source = "fn a() {}\n\tlet b = ;\n";

        let shown = excerpt(
            source,
            "src/lib.rs",
            Position {
                line: 2,
                column: 10,
            },
        )
        .unwrap();

        assert_eq!(
            shown,
            " --> src/lib.rs:2:10\n  |\n2 | \tlet b = ;\n  | \t        ^"
        );
        assert_eq!(excerpt(source, "x", Position { line: 9, column: 1 }), None);
    }
}
