//! The functions the scenarios register: the smallest ones that exercise the
//! whole path, so the numbers are the platform's and not the handler's.

/// Returns its input: the cost of one execution is all platform.
pub const ECHO_RUST: &str = r#"use serde_json::Value;

pub fn handler(input: Value) -> Result<Value, String> {
    Ok(input)
}
"#;

/// Another echo, for the cold start: its module must differ from
/// [`ECHO_RUST`]'s, or the executors' compiled-code cache (keyed by the
/// module's sha256) would already hold it.
pub const COLD_ECHO_RUST: &str = r#"use serde_json::{json, Value};

pub fn handler(input: Value) -> Result<Value, String> {
    Ok(json!({ "echo": input }))
}
"#;

/// The README's hello world (what a new user builds first).
pub const HELLO_RUST: &str = r#"use serde_json::{json, Value};

pub fn handler(input: Value) -> Result<Value, String> {
    let name = input["name"].as_str().unwrap_or("world");
    Ok(json!({ "greeting": format!("Hello, {name}!") }))
}
"#;

/// The trivial TypeScript handler of docs/benchmarks.md.
pub const HELLO_TS: &str =
    "export default (input: { name: string }) => ({ greeting: `Hello, ${input.name}!` });\n";

/// examples/word-stats: regex, sha2 and hex from crates.io.
pub const WORD_STATS_RUST: &str = include_str!("../../examples/word-stats/handler.rs");

/// examples/signup-ts: zod and date-fns from npm.
pub const SIGNUP_TS: &str = include_str!("../../examples/signup-ts/handler.ts");
