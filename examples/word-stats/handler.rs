// A Rust handler with dependencies from crates.io (declared in
// function.json): `regex` finds the words, `sha2` and `hex` fingerprint the
// text. serde and serde_json are always there.

use std::collections::BTreeMap;

use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Deserialize)]
pub struct Input {
    text: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    words: usize,
    distinct_words: usize,
    most_common: Option<String>,
    sha256: String,
}

pub fn handler(input: Input) -> Result<Stats, String> {
    // Letters, digits and apostrophes in any script.
    let word = Regex::new(r"[\p{L}\p{N}']+").map_err(|e| e.to_string())?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for found in word.find_iter(&input.text) {
        *counts.entry(found.as_str().to_lowercase()).or_default() += 1;
    }
    // The first of the most frequent words, in alphabetical order.
    let most_common = counts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(word, _)| word.clone());
    Ok(Stats {
        words: counts.values().sum(),
        distinct_words: counts.len(),
        most_common,
        sha256: hex::encode(Sha256::digest(input.text.as_bytes())),
    })
}
