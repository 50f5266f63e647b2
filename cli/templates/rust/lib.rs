//! {{name}}: a Plat function.
//!
//! Plat calls `handler` with the request's JSON input, deserialized into
//! `Input`, and answers with what it returns, serialized as JSON. `Err(e)`
//! fails the run with `e.to_string()`. `eprintln!` writes to the run's logs;
//! stdout is Plat's (it carries the output). `serde` and `serde_json` are
//! the crates available.

use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub struct Input {
    name: Option<String>,
}

#[derive(Serialize)]
pub struct Output {
    greeting: String,
}

pub fn handler(input: Input) -> Result<Output, String> {
    let name = input.name.unwrap_or_else(|| "world".to_owned());
    eprintln!("greeting {name}");
    Ok(Output {
        greeting: format!("Hello, {name}!"),
    })
}
