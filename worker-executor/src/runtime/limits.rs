//! The per-run `ResourceLimiter`.
//!
//! wasmtime's `StoreLimits` can refuse growth, but it cannot tell us afterwards
//! that it did. A Rust guest whose allocation fails calls
//! `handle_alloc_error`, which aborts with an `unreachable` trap — from the
//! outside indistinguishable from any other trap. Recording the refusal lets
//! the run report `OUT_OF_MEMORY` instead of a puzzling `TRAP`.
//!
//! Growth is refused (`Ok(false)`, `memory.grow` returns -1) rather than
//! trapped, so a guest that handles allocation failure (`try_reserve`, a JS
//! engine throwing "out of memory") keeps running and can report it itself.

/// Tables hold function references; Rust modules use a few hundred entries
/// and a JS engine a few thousand. Elements live outside linear memory, so
/// they get their own cap.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 100_000;

/// A WASI command is one core instance with one memory and (for Rust and C
/// toolchains) one table; a little slack on tables costs nothing. A
/// TypeScript function is two instances, the JavaScript engine and the
/// function's module, sharing the engine's one memory.
const MAX_INSTANCES: usize = 2;
const MAX_MEMORIES: usize = 1;
pub(crate) const MAX_TABLES: usize = 4;

/// What the limiter refused during a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Refusals {
    pub(crate) memory: bool,
    pub(crate) table: bool,
}

#[derive(Debug)]
pub(crate) struct Limiter {
    memory_bytes: usize,
    refused: Refusals,
}

impl Limiter {
    pub(crate) fn new(memory_bytes: usize) -> Self {
        Self {
            memory_bytes,
            refused: Refusals::default(),
        }
    }

    pub(crate) fn refusals(&self) -> Refusals {
        self.refused
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Also called for the initial size at instantiation, so a module whose
        // minimum memory is over the limit fails to instantiate and is recorded.
        if desired > self.memory_bytes {
            self.refused.memory = true;
            return Ok(false);
        }
        // Beyond the module's own declared maximum: the guest asked for
        // something its module forbids; not our limit, nothing to record.
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.refused.table = true;
            return Ok(false);
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn growth_beyond_the_limit_is_refused_and_recorded() {
        let mut limiter = Limiter::new(1 << 20);

        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        assert_eq!(limiter.refusals(), Refusals::default());

        assert!(!limiter
            .memory_growing(1 << 20, (1 << 20) + 65536, None)
            .unwrap());
        assert!(limiter.refusals().memory);
    }

    #[test]
    fn growth_beyond_the_modules_own_maximum_is_refused_but_not_recorded() {
        let mut limiter = Limiter::new(1 << 30);

        assert!(!limiter.memory_growing(0, 2 << 16, Some(1 << 16)).unwrap());
        assert!(!limiter.table_growing(0, 20, Some(10)).unwrap());

        assert_eq!(limiter.refusals(), Refusals::default());
    }

    #[test]
    fn tables_beyond_the_element_cap_are_refused_and_recorded() {
        let mut limiter = Limiter::new(1 << 30);

        assert!(!limiter
            .table_growing(0, MAX_TABLE_ELEMENTS + 1, None)
            .unwrap());

        assert!(limiter.refusals().table);
    }
}
