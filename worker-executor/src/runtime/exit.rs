//! `proc_exit` that accepts every exit code.
//!
//! wasmtime-wasi turns codes of 126 and above into an untyped error ("exit
//! with invalid exit status outside of [0..126)"), which would surface as a
//! `TRAP`. The module contract says any code `n` means "the function called
//! `exit(n)`", so this replacement (shadowing the original in the linker)
//! reports every code the same way.

use wasmtime::{Caller, Linker};
use wasmtime_wasi::I32Exit;

/// Replaces wasmtime-wasi's `proc_exit`; call after `p1::add_to_linker_sync`.
pub(crate) fn add_to_linker<T: 'static>(linker: &mut Linker<T>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "proc_exit",
        // WASI's exit code is a u32 passed as i32; keeping the i32 makes
        // Rust's `exit(-1)` read as -1 rather than 4294967295.
        |_caller: Caller<'_, T>, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::new(I32Exit(code)))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
