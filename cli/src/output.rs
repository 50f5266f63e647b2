//! What the commands print: aligned tables and short lines for people, or
//! one JSON document on stdout (`--output json`) for programs. Everything
//! that is not the result (progress, warnings, logs of a run) goes to
//! stderr, so stdout stays parseable in either mode.

use std::io::Write as _;

use chrono::{DateTime, Local};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// Tables and sentences.
    #[default]
    Human,
    /// One JSON document on stdout (JSON lines for `executions --follow`).
    Json,
}

impl OutputFormat {
    pub fn is_json(self) -> bool {
        self == OutputFormat::Json
    }
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("a JSON value serialises")
    );
}

/// Prints `value` as one line of JSON on stdout (JSON lines), flushed so a
/// reader sees it at once.
pub fn print_json_line(value: &Value) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{value}");
    let _ = stdout.flush();
}

/// A table of text cells, printed with columns padded to their widest cell.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Columns padded to their widest cell, two spaces apart; on a
    /// terminal, wide cells wrap so that a row fits its width.
    pub fn render(&self) -> String {
        let mut table = comfy_table::Table::new();
        table
            .load_preset(comfy_table::presets::NOTHING)
            .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
            .set_header(&self.header)
            .add_rows(&self.rows);
        let last = self.header.len().saturating_sub(1);
        for column in table.column_iter_mut() {
            column.set_padding((0, if column.index == last { 0 } else { 2 }));
        }
        // The last column's cells are padded to its width too.
        table
            .lines()
            .map(|line| line.trim_end().to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn print(&self) {
        println!("{}", self.render());
    }
}

/// A field of a JSON object as text: strings as they are, numbers and
/// booleans as JSON writes them, null or missing as `-`.
pub fn cell(value: &Value, field: &str) -> String {
    text(value.get(field).unwrap_or(&Value::Null))
}

pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An RFC 3339 timestamp from the API in the local time zone, to the second.
pub fn time(value: &Value) -> String {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| {
            t.with_timezone(&Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| text(value))
}

/// A ratio in 0..1 as a percentage (`97.5%`), `-` when null.
pub fn percent(value: &Value) -> String {
    match value.as_f64() {
        Some(ratio) => {
            let percent = ratio * 100.0;
            if percent.fract() == 0.0 {
                format!("{percent:.0}%")
            } else {
                format!("{percent:.1}%")
            }
        }
        None => "-".to_owned(),
    }
}

/// Milliseconds as people read them: `12 ms`, `1.5 s`.
pub fn millis(value: &Value) -> String {
    match value.as_f64() {
        Some(ms) if ms >= 1000.0 => format!("{:.1} s", ms / 1000.0),
        Some(ms) => format!("{ms:.0} ms"),
        None => "-".to_owned(),
    }
}

/// A function view's tags as `a,b`, `-` for none.
pub fn tags(value: &Value) -> String {
    match value.get("tags").and_then(Value::as_array) {
        Some(tags) if !tags.is_empty() => tags.iter().map(text).collect::<Vec<_>>().join(","),
        _ => "-".to_owned(),
    }
}

/// Pretty JSON for people (an execution's output).
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).expect("a JSON value serialises")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_pad_every_column_but_the_last() {
        let mut table = Table::new(&["NAME", "STATUS"]);
        table.row(vec!["hello".into(), "READY".into()]);
        table.row(vec!["a".into(), "FAILED".into()]);

        assert_eq!(table.render(), "NAME   STATUS\nhello  READY\na      FAILED");
    }

    #[test]
    fn cells_show_missing_values_as_a_dash() {
        let view = json!({"name": "x", "successRate": null, "executionCount": 3});

        assert_eq!(cell(&view, "name"), "x");
        assert_eq!(cell(&view, "executionCount"), "3");
        assert_eq!(cell(&view, "nope"), "-");
        assert_eq!(percent(&view["successRate"]), "-");
        assert_eq!(percent(&json!(0.975)), "97.5%");
        assert_eq!(percent(&json!(1.0)), "100%");
        assert_eq!(millis(&json!(1500)), "1.5 s");
        assert_eq!(millis(&json!(2)), "2 ms");
    }
}
