//! `function.json`: what a function folder declares about its function
//! (name, version, language, entry file, limits), read by `plat test` and
//! `plat deploy`, written by `plat init`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use plat_common::dependencies::Dependencies;
use plat_common::{function_name, ExecutionConfig};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub const FILE_NAME: &str = "function.json";
/// The version `plat init` starts at.
pub const FIRST_VERSION: &str = "0.1.0";
/// The languages Plat builds ([`plat_common::Language`]) as the command
/// line takes them (`plat init --language ts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Rust,
    #[value(name = "ts", alias = "typescript")]
    #[serde(rename = "typescript")]
    TypeScript,
}

impl From<Language> for plat_common::Language {
    fn from(language: Language) -> Self {
        match language {
            Language::Rust => plat_common::Language::Rust,
            Language::TypeScript => plat_common::Language::TypeScript,
        }
    }
}

impl Language {
    /// The API's name, e.g. `typescript`.
    pub fn as_str(self) -> &'static str {
        plat_common::Language::from(self).as_str()
    }

    /// Where `plat init` puts the handler, relative to the function folder.
    pub fn default_entry(self) -> &'static str {
        match self {
            Language::Rust => "src/lib.rs",
            Language::TypeScript => "index.ts",
        }
    }

    /// How the compilers name the user's file in their messages
    /// (`handler.rs:3:5`), whatever it is called locally.
    pub fn compiler_file_name(self) -> &'static str {
        match self {
            Language::Rust => "handler.rs",
            Language::TypeScript => "handler.ts",
        }
    }
}

/// `function.json`. Unknown fields are refused, as the API refuses them, so
/// a typo (`timeout` for `timeoutMs`) is an error rather than a silent
/// default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    /// Semantic version of the source; each deploy needs a greater one.
    pub version: String,
    pub language: Language,
    /// The handler's source file, relative to the folder.
    pub entry: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub execution_config: ManifestExecutionConfig,
    /// The id of a server-side environment whose variables the runs get.
    #[serde(default)]
    pub environment: Option<String>,
    /// Crates (Rust) or npm packages (TypeScript) the function uses, as
    /// the API takes them (docs/dependencies.md).
    #[serde(default, skip_serializing_if = "Dependencies::is_empty")]
    pub dependencies: Dependencies,
}

/// The limits the function asks for; what is left out takes the platform's
/// default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestExecutionConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit_mb: Option<u32>,
    #[serde(default)]
    pub environment_variables: BTreeMap<String, String>,
}

impl ManifestExecutionConfig {
    /// The config a run gets, on the server or in `plat test`.
    pub fn resolved(&self) -> ExecutionConfig {
        let defaults = ExecutionConfig::default();
        ExecutionConfig {
            timeout_ms: self.timeout_ms.unwrap_or(defaults.timeout_ms),
            memory_limit_mb: self.memory_limit_mb.unwrap_or(defaults.memory_limit_mb),
            environment_variables: self.environment_variables.clone(),
            max_concurrency: None,
            retry: None,
        }
    }

    /// As the API takes it (`executionConfig`).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a config serialises")
    }
}

/// A function folder: its manifest and its handler's source.
#[derive(Debug)]
pub struct FunctionDir {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub entry_path: PathBuf,
    pub source: String,
}

impl FunctionDir {
    /// Reads and checks `dir/function.json` and the entry file it names.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(FILE_NAME);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (is this a function folder? `plat init` makes one; --dir points at another)",
                path.display()
            )
        })?;
        let manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid manifest", path.display()))?;
        manifest
            .check()
            .with_context(|| format!("in {}", path.display()))?;
        let entry_path = dir.join(&manifest.entry);
        let source = std::fs::read_to_string(&entry_path).with_context(|| {
            format!(
                "reading the entry file {} named by {}",
                entry_path.display(),
                path.display()
            )
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            entry_path,
            source,
        })
    }
}

impl Manifest {
    /// The manifest `plat init` writes.
    pub fn new(name: &str, language: Language) -> Self {
        let defaults = ExecutionConfig::default();
        Self {
            name: name.to_owned(),
            version: FIRST_VERSION.to_owned(),
            language,
            entry: language.default_entry().to_owned(),
            description: String::new(),
            tags: Vec::new(),
            execution_config: ManifestExecutionConfig {
                timeout_ms: Some(defaults.timeout_ms),
                memory_limit_mb: Some(defaults.memory_limit_mb),
                environment_variables: BTreeMap::new(),
            },
            environment: None,
            dependencies: Dependencies::new(),
        }
    }

    /// The checks that need no server: the name rule, a semantic version,
    /// an entry inside the folder.
    pub fn check(&self) -> anyhow::Result<()> {
        check_name(&self.name)?;
        semver::Version::parse(&self.version).with_context(|| {
            format!(
                "`version` {:?} is not a semantic version (MAJOR.MINOR.PATCH, e.g. \"1.2.0\")",
                self.version
            )
        })?;
        let entry = Path::new(&self.entry);
        if self.entry.is_empty()
            || entry.is_absolute()
            || entry
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            anyhow::bail!(
                "`entry` must be a file inside the function folder, got {:?}",
                self.entry
            );
        }
        plat_common::dependencies::check(self.language.into(), &self.dependencies)
            .map_err(anyhow::Error::msg)?;
        if let Some(environment) = &self.environment {
            uuid::Uuid::try_parse(environment).with_context(|| {
                format!(
                    "`environment` must be an environment id (a UUID) or null, got {environment:?}"
                )
            })?;
        }
        Ok(())
    }

    /// The fields `POST /functions` and `PUT /functions/{name}` share.
    pub fn common_fields(&self, source: &str) -> serde_json::Map<String, Value> {
        let description = (!self.description.is_empty()).then_some(self.description.as_str());
        let body = json!({
            "source": source,
            "description": description,
            "tags": self.tags,
            "executionConfig": self.execution_config.to_json(),
            "environmentId": self.environment,
            "version": self.version,
            "dependencies": self.dependencies,
        });
        match body {
            Value::Object(fields) => fields,
            _ => unreachable!("a JSON object literal"),
        }
    }
}

/// The server's rule for function names ([`function_name`]), checked here
/// too so `plat init` refuses what `plat deploy` would.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        function_name::is_valid(name),
        "invalid function name {name:?}: use {}",
        function_name::RULE
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_manifest_round_trips_with_the_documented_field_names() {
        let manifest = Manifest::new("hello", Language::TypeScript);

        let json = serde_json::to_value(&manifest).unwrap();

        assert_eq!(json["language"], "typescript");
        assert_eq!(json["version"], "0.1.0");
        assert_eq!(json["entry"], "index.ts");
        assert_eq!(json["executionConfig"]["timeoutMs"], 10_000);
        assert_eq!(json["executionConfig"]["memoryLimitMb"], 128);
        assert_eq!(json["environment"], Value::Null);
        let back: Manifest = serde_json::from_value(json).unwrap();
        back.check().unwrap();
    }

    #[test]
    fn the_manifest_names_languages_as_the_api_does() {
        for language in [Language::Rust, Language::TypeScript] {
            assert_eq!(
                serde_json::to_value(language).unwrap(),
                serde_json::to_value(plat_common::Language::from(language)).unwrap()
            );
        }
    }

    #[test]
    fn a_typo_in_the_manifest_is_an_error() {
        let text = r#"{"name": "x", "version": "0.1.0", "language": "rust", "entry": "src/lib.rs",
                       "executionConfig": {"timeout": 5}}"#;

        let error = serde_json::from_str::<Manifest>(text).unwrap_err();

        assert!(
            error.to_string().contains("unknown field `timeout`"),
            "{error}"
        );
    }

    #[test]
    fn versions_must_be_semantic_and_entries_inside_the_folder() {
        let mut manifest = Manifest::new("x", Language::Rust);
        manifest.version = "1.0".into();
        assert!(manifest.check().is_err());
        manifest.version = "1.0.0".into();
        manifest.entry = "../elsewhere.rs".into();
        assert!(manifest.check().is_err());
    }
}
