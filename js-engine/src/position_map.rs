//! The position map from generated `handler.js` to the user's `handler.ts`
//! (see README.md for the layout).

/// One mapping, all 0-based: generated (line, col) → original (line, col).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    gen: (u32, u32),
    orig: (u32, u32),
}

/// Entries sorted by generated position.
#[derive(Debug, Default)]
pub struct PositionMap {
    entries: Vec<Entry>,
}

impl PositionMap {
    /// Parses `len / 16` entries of four little-endian u32 (a trailing
    /// partial entry is ignored). Sorts them, in case the producer did not.
    pub fn parse(bytes: &[u8]) -> Self {
        let word = |chunk: &[u8], i: usize| {
            u32::from_le_bytes([
                chunk[i * 4],
                chunk[i * 4 + 1],
                chunk[i * 4 + 2],
                chunk[i * 4 + 3],
            ])
        };
        let mut entries: Vec<Entry> = bytes
            .chunks_exact(16)
            .map(|c| Entry {
                gen: (word(c, 0), word(c, 1)),
                orig: (word(c, 2), word(c, 3)),
            })
            .collect();
        entries.sort_by_key(|e| e.gen);
        Self { entries }
    }

    /// The original position of a generated one (0-based): the last entry at
    /// or before it on the same line; else the line's first entry; else the
    /// nearest earlier entry; else the first entry. `None` without a map.
    pub fn lookup(&self, line: u32, col: u32) -> Option<(u32, u32)> {
        let after = self.entries.partition_point(|e| e.gen <= (line, col));
        let before = after.checked_sub(1).map(|i| self.entries[i]);
        let next = self.entries.get(after).copied();
        let chosen = match (before, next) {
            (Some(b), _) if b.gen.0 == line => b,
            (_, Some(n)) if n.gen.0 == line => n,
            (Some(b), _) => b,
            (None, Some(n)) => n,
            (None, None) => return None,
        };
        Some(chosen.orig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[[u32; 4]]) -> PositionMap {
        let bytes: Vec<u8> = entries
            .iter()
            .flatten()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        PositionMap::parse(&bytes)
    }

    #[test]
    fn picks_the_last_entry_at_or_before_the_position_on_its_line() {
        let m = map(&[[2, 0, 5, 0], [2, 4, 5, 8], [2, 10, 6, 2]]);
        assert_eq!(m.lookup(2, 6), Some((5, 8)));
        assert_eq!(m.lookup(2, 10), Some((6, 2)));
    }

    #[test]
    fn prefers_an_entry_on_the_same_line_over_an_earlier_line() {
        let m = map(&[[1, 0, 1, 0], [3, 5, 9, 1]]);
        assert_eq!(m.lookup(3, 2), Some((9, 1)));
    }

    #[test]
    fn falls_back_to_the_nearest_earlier_entry_when_the_line_has_none() {
        let m = map(&[[1, 0, 1, 0], [1, 7, 2, 3], [5, 0, 9, 0]]);
        assert_eq!(m.lookup(3, 2), Some((2, 3)));
    }

    #[test]
    fn an_empty_map_maps_nothing() {
        assert_eq!(map(&[]).lookup(0, 0), None);
    }
}
