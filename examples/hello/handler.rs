use serde_json::{json, Value};

pub fn handler(input: Value) -> Result<Value, String> {
    eprintln!("called with {input}");
    Ok(json!({ "greeting": format!("Hello, {}!", input["name"].as_str().unwrap_or("world")) }))
}
