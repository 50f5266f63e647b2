//! The few WASI calls std does not expose, and process exit helpers.

use std::io::Write;

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    /// WASI preview1 `random_get(buf, len) -> errno`.
    #[link_name = "random_get"]
    fn wasi_random_get(buf: *mut u8, len: usize) -> u16;
}

/// Fills `buf` from the host's random source (a trap-free best effort: on an
/// error the buffer keeps its contents).
pub fn random_fill(buf: &mut [u8]) {
    // SAFETY: the pointer/length describe a live, writable buffer.
    let _ = unsafe { wasi_random_get(buf.as_mut_ptr(), buf.len()) };
}

pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    random_fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// Exit codes, as the host's executor classifies them.
pub mod exit_code {
    /// The handler threw, rejected, never settled, or is not a function.
    pub const HANDLER_ERROR: i32 = 1;
    /// stdin was not valid JSON (sysexits EX_DATAERR).
    pub const BAD_INPUT: i32 = 65;
    /// stdout could not be written, e.g. over the host's cap (EX_IOERR).
    pub const OUTPUT_FAILED: i32 = 74;
}

/// Writes `message` and a newline to stdout, `report` (if any) to stderr,
/// then exits with `code` (WASI `proc_exit`).
pub fn fail(code: i32, message: &str, report: Option<&str>) -> ! {
    if let Some(report) = report {
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(report.as_bytes());
        let _ = stderr.write_all(b"\n");
        let _ = stderr.flush();
    }
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(message.as_bytes())
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    std::process::exit(if written.is_ok() {
        code
    } else {
        exit_code::OUTPUT_FAILED
    });
}
