//! Link settings that must hold however the crate is built (the host's
//! build script passes its own environment, which may override RUSTFLAGS).

fn main() {
    // QuickJS keeps each JS call's locals and operand stack on the wasm
    // shadow stack (the rest of its C frames are on the host's native wasm
    // stack). Rust's default is 1 MiB; 4 MiB keeps the shadow stack from
    // being the first to run out for any ordinary recursion. Overflowing
    // past its bottom traps (the stack sits first in memory) rather than
    // corrupting data.
    println!("cargo:rustc-link-arg=-zstack-size=4194304");
    println!("cargo:rerun-if-changed=build.rs");
}
