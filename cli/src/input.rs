//! The input of a run, given as `--input FILE|JSON`: a file's path, `-` for
//! stdin, or the JSON itself.

use std::io::Read as _;
use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

/// The input `--input` names, checked to be JSON. A path that exists is
/// read (so `--input input.json` reads the file, not the string); anything
/// else must be JSON text.
pub fn read(argument: &str) -> anyhow::Result<Value> {
    let (text, origin) = if argument == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the input from stdin")?;
        (text, "stdin".to_owned())
    } else if Path::new(argument).is_file() {
        let text = std::fs::read_to_string(argument)
            .with_context(|| format!("reading the input file {argument}"))?;
        (text, argument.to_owned())
    } else {
        return serde_json::from_str(argument)
            .with_context(|| format!("--input {argument:?} is neither a file nor valid JSON"));
    };
    parse(&text).with_context(|| format!("the input in {origin} is not valid JSON"))
}

/// JSON text as a value; empty text is `null`, as the API reads an empty body.
pub fn parse(text: &str) -> anyhow::Result<Value> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_str(text)?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_text_is_taken_as_the_input() {
        assert_eq!(read(r#"{"name": "Ada"}"#).unwrap(), json!({"name": "Ada"}));
        assert_eq!(read("42").unwrap(), json!(42));
    }

    #[test]
    fn an_existing_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("input.json");
        std::fs::write(&file, "[1, 2]\n").unwrap();

        assert_eq!(read(file.to_str().unwrap()).unwrap(), json!([1, 2]));
    }

    #[test]
    fn neither_a_file_nor_json_says_so() {
        let error = read("no-such-file.json").unwrap_err();

        assert!(
            error.to_string().contains("neither a file nor valid JSON"),
            "{error}"
        );
    }
}
