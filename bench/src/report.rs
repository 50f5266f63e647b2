//! The results: rows grouped by scenario, per profile; printed as a table
//! and written as JSON. Every JSON key carries its unit (`p50_ms`,
//! `per_sec`, `_count`, `_pct`, `_ratio`), so the file reads on its own.

use std::path::Path;

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::cluster::Profile;
use crate::machine::Machine;

/// One measurement.
#[derive(Debug, Clone)]
pub struct Row {
    /// The JSON key, with its unit.
    pub key: String,
    /// What the table shows, with its unit.
    pub label: String,
    pub value: f64,
}

/// A scenario's rows, in the order measured.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: &'static str,
    pub rows: Vec<Row>,
}

impl Group {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, key: impl Into<String>, label: impl Into<String>, value: f64) {
        let key = key.into();
        // The table and the JSON pair rows by key: a second row with the
        // same key would be lost from both.
        assert!(
            self.rows.iter().all(|row| row.key != key),
            "{}: the key {key} is used twice",
            self.name
        );
        self.rows.push(Row {
            key,
            label: label.into(),
            value,
        });
    }
}

// Rows serialize as one object in the order measured (serde_json keeps the
// order of a serialized map; only its `Value` sorts keys).
impl Serialize for Group {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.rows.len()))?;
        for row in &self.rows {
            // Three decimals: a thousandth of a µs or of an execution/s is
            // noise, and long tails of digits make the file hard to read.
            map.serialize_entry(&row.key, &((row.value * 1e3).round() / 1e3))?;
        }
        map.end()
    }
}

/// Everything one profile produced.
#[derive(Debug, Clone)]
pub struct ProfileReport {
    pub profile: Profile,
    pub groups: Vec<Group>,
    /// What was timed and how, where a number needs it.
    pub notes: Vec<String>,
    /// Scenarios that failed (the others still ran).
    pub errors: Vec<String>,
}

impl ProfileReport {
    pub fn new(profile: Profile) -> Self {
        Self {
            profile,
            groups: Vec::new(),
            notes: Vec::new(),
            errors: Vec::new(),
        }
    }
}

impl Serialize for ProfileReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let settings: serde_json::Map<String, serde_json::Value> = self
            .profile
            .settings()
            .into_iter()
            .map(|(name, value)| (name, value.into()))
            .collect();
        let mut map = serializer.serialize_map(Some(5))?;
        map.serialize_entry("label", self.profile.label())?;
        map.serialize_entry("settings", &settings)?;
        map.serialize_entry("results", &Groups(&self.groups))?;
        map.serialize_entry("notes", &self.notes)?;
        map.serialize_entry("errors", &self.errors)?;
        map.end()
    }
}

struct Groups<'a>(&'a [Group]);

impl Serialize for Groups<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for group in self.0 {
            map.serialize_entry(group.name, group)?;
        }
        map.end()
    }
}

struct Profiles<'a>(&'a [ProfileReport]);

impl Serialize for Profiles<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for profile in self.0 {
            map.serialize_entry(profile.profile.name(), profile)?;
        }
        map.end()
    }
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct Report {
    pub timestamp: DateTime<Utc>,
    pub git_revision: String,
    pub quick: bool,
    pub machine: Machine,
    pub profiles: Vec<ProfileReport>,
}

impl Serialize for Report {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(5))?;
        map.serialize_entry(
            "timestamp",
            &self.timestamp.to_rfc3339_opts(SecondsFormat::Secs, true),
        )?;
        map.serialize_entry("git_revision", &self.git_revision)?;
        map.serialize_entry("quick", &self.quick)?;
        map.serialize_entry("machine", &self.machine)?;
        map.serialize_entry("profiles", &Profiles(&self.profiles))?;
        map.end()
    }
}

impl Report {
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("creating {}", folder.display()))?;
        }
        let mut json = serde_json::to_string_pretty(self)?;
        json.push('\n');
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))
    }

    /// One line per metric: group, metric, then one column per profile.
    pub fn table(&self) -> String {
        // Metrics in the order first measured, whichever profile had them.
        let mut metrics: Vec<(&'static str, &Row)> = Vec::new();
        for profile in &self.profiles {
            for group in &profile.groups {
                for row in &group.rows {
                    if !metrics
                        .iter()
                        .any(|(g, r)| *g == group.name && r.key == row.key)
                    {
                        metrics.push((group.name, row));
                    }
                }
            }
        }
        let value = |profile: &ProfileReport, group: &str, key: &str| {
            profile
                .groups
                .iter()
                .filter(|g| g.name == group)
                .flat_map(|g| &g.rows)
                .find(|r| r.key == key)
                .map_or_else(|| "-".to_owned(), |r| format_value(r.value))
        };
        let mut lines: Vec<Vec<String>> = vec![std::iter::once("group".to_owned())
            .chain(std::iter::once("metric".to_owned()))
            .chain(self.profiles.iter().map(|p| p.profile.label().to_owned()))
            .collect()];
        for (group, row) in &metrics {
            let mut line = vec![(*group).to_owned(), row.label.clone()];
            line.extend(self.profiles.iter().map(|p| value(p, group, &row.key)));
            lines.push(line);
        }
        render(&lines)
    }
}

/// Aligned columns: text to the left, numbers to the right.
fn render(lines: &[Vec<String>]) -> String {
    let columns = lines.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c < 2 {
                    format!("{cell:<width$}", width = widths[c])
                } else {
                    format!("{cell:>width$}", width = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            let total = widths.iter().sum::<usize>() + 2 * (columns.saturating_sub(1));
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
    }
    out
}

/// Enough digits to compare, no more.
fn format_value(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1000.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_enough_digits_to_compare() {
        assert_eq!(format_value(12345.678), "12346");
        assert_eq!(format_value(42.0), "42");
        assert_eq!(format_value(12.345), "12.3");
        assert_eq!(format_value(0.0123), "0.01");
        assert_eq!(format_value(-3.5), "-3.50");
    }
}
