//! Where each position of the generated JavaScript came from in the user's
//! TypeScript: oxc's source-map tokens, kept as a sorted table.
//!
//! The same table travels inside the function's module to the engine, which
//! rewrites stack frames with it; its binary form is the engine's ABI
//! (js-engine/README.md): entries of four little-endian u32 `gen_line,
//! gen_col, orig_line, orig_col`, all 0-based, sorted by generated position.

/// A sorted table of `[gen_line, gen_col, orig_line, orig_col]`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct PositionMap {
    entries: Vec<[u32; 4]>,
}

impl PositionMap {
    pub(crate) fn from_tokens(tokens: impl Iterator<Item = [u32; 4]>) -> Self {
        let mut entries: Vec<[u32; 4]> = tokens.collect();
        entries.sort_by_key(|e| (e[0], e[1]));
        // Several tokens can start at one generated position; the first one
        // printed is the outermost node, which is what a stack frame means.
        entries.dedup_by_key(|e| (e[0], e[1]));
        Self { entries }
    }

    /// The TypeScript position (0-based line and column) of a generated one:
    /// the last entry at or before it on the same line, else the line's
    /// first entry, else the nearest entry of an earlier line.
    pub(crate) fn lookup(&self, line: u32, column: u32) -> Option<(u32, u32)> {
        let after = self
            .entries
            .partition_point(|e| (e[0], e[1]) <= (line, column));
        let entry = match after.checked_sub(1).map(|i| self.entries[i]) {
            Some(entry) if entry[0] == line => entry,
            earlier => match self.entries.get(after) {
                Some(next) if next[0] == line => *next,
                _ => earlier?,
            },
        };
        Some((entry[2], entry[3]))
    }

    /// The engine's binary form.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        self.entries
            .iter()
            .flat_map(|entry| entry.iter().flat_map(|n| n.to_le_bytes()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> PositionMap {
        PositionMap::from_tokens(
            [
                [0, 0, 4, 0],
                [0, 7, 4, 9],
                [2, 4, 9, 2],
                [2, 4, 9, 8],
                [5, 2, 12, 0],
            ]
            .into_iter(),
        )
    }

    #[test]
    fn looks_up_the_last_entry_at_or_before_on_the_line() {
        let map = map();
        assert_eq!(map.lookup(0, 3), Some((4, 0)));
        assert_eq!(map.lookup(0, 7), Some((4, 9)));
        assert_eq!(map.lookup(2, 10), Some((9, 2)), "duplicates keep the first");
    }

    #[test]
    fn falls_back_to_the_lines_first_entry_then_earlier_lines() {
        let map = map();
        assert_eq!(map.lookup(5, 0), Some((12, 0)));
        assert_eq!(map.lookup(3, 1), Some((9, 2)));
        assert_eq!(PositionMap::default().lookup(1, 1), None);
    }

    #[test]
    fn binary_form_is_little_endian_quads() {
        let bytes = PositionMap::from_tokens([[1, 2, 3, 258]].into_iter()).to_bytes();
        assert_eq!(bytes, [1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 2, 1, 0, 0]);
    }
}
