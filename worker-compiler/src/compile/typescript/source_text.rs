//! The user's source as lines, for messages that point into it.

use super::transform::USER_FILE;

/// Line starts of a source, to turn byte offsets into `line:column`.
pub(crate) struct SourceText<'a> {
    source: &'a str,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
}

impl<'a> SourceText<'a> {
    pub(crate) fn new(source: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            source,
            line_starts,
        }
    }

    /// 0-based line and 0-based column (in characters) of a byte offset.
    pub(crate) fn position(&self, offset: u32) -> (u32, u32) {
        let offset = (offset as usize).min(self.source.len());
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let start = self.line_starts[line];
        let column = self
            .source
            .get(start..offset)
            .map_or(0, |prefix| prefix.chars().count());
        (line as u32, column as u32)
    }

    /// `handler.ts:L:C: error: message`, then the line and a caret under
    /// the column (all 1-based, as editors show them).
    pub(crate) fn message_at(&self, offset: u32, message: &str) -> String {
        let (line, column) = self.position(offset);
        self.message_at_position(line, column, message)
    }

    /// [`message_at`](Self::message_at) for a 0-based line and column.
    pub(crate) fn message_at_position(&self, line: u32, column: u32, message: &str) -> String {
        let mut out = format!("{USER_FILE}:{}:{}: error: {message}", line + 1, column + 1);
        if let Some(text) = self.line(line) {
            let number = (line + 1).to_string();
            // Tabs keep their width in the caret line so the caret lines up.
            let pad: String = text
                .chars()
                .take(column as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!(
                "\n{number} | {text}\n{} | {pad}^",
                " ".repeat(number.len())
            ));
        }
        out
    }

    fn line(&self, line: u32) -> Option<&'a str> {
        let start = *self.line_starts.get(line as usize)?;
        let end = self
            .line_starts
            .get(line as usize + 1)
            .map_or(self.source.len(), |next| next - 1);
        Some(self.source[start..end].trim_end_matches('\r'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_characters_from_zero() {
        let text = SourceText::new("ab\nçd = 1\n");
        assert_eq!(text.position(0), (0, 0));
        assert_eq!(text.position(3), (1, 0));
        assert_eq!(text.position(5), (1, 1), "ç is two bytes, one character");
    }

    #[test]
    fn message_shows_the_line_and_a_caret() {
        let text = SourceText::new("let a;\nlet b = ;\n");
        assert_eq!(
            text.message_at(15, "Unexpected token"),
            "handler.ts:2:9: error: Unexpected token\n2 | let b = ;\n  |         ^"
        );
    }
}
