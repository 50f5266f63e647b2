//! Plat's JavaScript engine: QuickJS (via javy/rquickjs) built as a WASI
//! preview1 reactor. The host pre-initialises it once with wizer
//! (`plat_init`), compiles handlers to bytecode with `plat_compile`, and each
//! function's tiny module links against it and calls `plat_invoke`.
//!
//! The ABI is described in README.md; this file only holds the exports.

mod engine;
mod invoke;
mod position_map;
mod wasi;

use std::alloc::{self, Layout};

/// Allocation entry point for the host and the per-function module (the
/// canonical-ABI `cabi_realloc` signature).
///
/// # Safety
/// `old_ptr`/`old_len`/`align` must describe a block this function returned
/// earlier (or `old_len == 0`).
#[no_mangle]
pub unsafe extern "C" fn cabi_realloc(
    old_ptr: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    if new_len == 0 {
        // Zero-sized blocks need no memory; any aligned non-null pointer will do.
        return align as *mut u8;
    }
    let Ok(layout) = Layout::from_size_align(new_len, align) else {
        std::process::abort();
    };
    // SAFETY: the layout has a non-zero size; the caller vouches for old_ptr.
    let ptr = unsafe {
        if old_len == 0 {
            alloc::alloc(layout)
        } else {
            alloc::realloc(
                old_ptr,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        }
    };
    if ptr.is_null() {
        alloc::handle_alloc_error(layout);
    }
    ptr
}

/// The wizer init function: builds the runtime, context, globals and
/// prelude, so they are part of the snapshot.
#[no_mangle]
pub extern "C" fn plat_init() {
    engine::init();
}

/// Compiles the UTF-8 ES module at `src_ptr..src_ptr+src_len` (named
/// `handler.js`) to QuickJS bytecode, written to stdout. Returns 0, or 1
/// with the error on stderr.
///
/// # Safety
/// The range must be readable memory of this instance.
#[no_mangle]
pub unsafe extern "C" fn plat_compile(src_ptr: *const u8, src_len: usize) -> i32 {
    // SAFETY: the caller wrote the source there (through cabi_realloc).
    let source = unsafe { std::slice::from_raw_parts(src_ptr, src_len) };
    engine::compile(source)
}

/// Runs one invocation: input JSON on stdin, result JSON on stdout, exit
/// code per README.md. Returns only on success.
///
/// # Safety
/// Both ranges must be memory of this instance that stays untouched for the
/// rest of the instance's life (QuickJS reads the bytecode in place).
#[no_mangle]
pub unsafe extern "C" fn plat_invoke(
    code_ptr: *const u8,
    code_len: usize,
    map_ptr: *const u8,
    map_len: usize,
) {
    // SAFETY: `_start` allocated these and never frees them.
    let (code, map) = unsafe {
        (
            std::slice::from_raw_parts(code_ptr, code_len),
            if map_len == 0 {
                &[][..]
            } else {
                std::slice::from_raw_parts(map_ptr, map_len)
            },
        )
    };
    invoke::run(code, position_map::PositionMap::parse(map));
}
