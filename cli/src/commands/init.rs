//! `plat init NAME --lang rust|ts`: a new function folder from the templates
//! in cli/templates/.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use serde_json::json;

use super::{shown, Context};
use crate::manifest::{self, Language, Manifest};
use crate::output;

const RUST_HANDLER: &str = include_str!("../../templates/rust/lib.rs");
const TYPESCRIPT_HANDLER: &str = include_str!("../../templates/typescript/index.ts");
const SAMPLE_INPUT: &str = include_str!("../../templates/input.json");
const README: &str = include_str!("../../templates/README.md");

#[derive(Debug, Args)]
pub struct Init {
    /// The function's name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// The handler's language.
    #[arg(long, value_enum)]
    pub lang: Language,
    /// The folder to create [default: ./NAME]
    #[arg(long, value_name = "PATH")]
    pub dir: Option<PathBuf>,
}

pub fn run(context: &Context, init: Init) -> anyhow::Result<()> {
    manifest::check_name(&init.name)?;
    let dir = init.dir.unwrap_or_else(|| PathBuf::from(&init.name));
    refuse_non_empty(&dir)?;

    let manifest = Manifest::new(&init.name, init.lang);
    let handler = match init.lang {
        Language::Rust => RUST_HANDLER,
        Language::TypeScript => TYPESCRIPT_HANDLER,
    };
    let fill = |template: &str| {
        template
            .replace("{{name}}", &init.name)
            .replace("{{language}}", language_name(init.lang))
            .replace("{{entry}}", &manifest.entry)
    };
    let mut manifest_json = serde_json::to_string_pretty(&manifest)?;
    manifest_json.push('\n');
    let files = [
        (manifest::FILE_NAME.to_owned(), manifest_json),
        (manifest.entry.clone(), fill(handler)),
        ("input.json".to_owned(), SAMPLE_INPUT.to_owned()),
        ("README.md".to_owned(), fill(README)),
    ];
    for (relative, content) in &files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }

    if context.json() {
        output::print_json(&json!({
            "name": init.name,
            "language": init.lang.as_str(),
            "dir": shown(&dir),
            "files": files.iter().map(|(name, _)| name).collect::<Vec<_>>(),
        }));
    } else {
        println!(
            "Created {} function {:?} in {}/",
            language_name(init.lang),
            init.name,
            shown(&dir)
        );
        for (name, _) in &files {
            println!("  {name}");
        }
        println!(
            "\nNext:\n  cd {}\n  plat test       # compile and run it here\n  plat deploy     # send it to the platform",
            shown(&dir)
        );
    }
    Ok(())
}

fn language_name(language: Language) -> &'static str {
    match language {
        Language::Rust => "Rust",
        Language::TypeScript => "TypeScript",
    }
}

/// An existing folder is fine only when empty: init never overwrites.
fn refuse_non_empty(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                anyhow::bail!(
                    "{} already exists and is not empty; choose another name or --dir",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotADirectory => {
            anyhow::bail!("{} already exists and is a file", dir.display())
        }
        Err(error) => Err(anyhow::Error::new(error).context(format!("reading {}", dir.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_name_the_function() {
        assert!(RUST_HANDLER.contains("pub fn handler("));
        assert!(TYPESCRIPT_HANDLER.contains("export default"));
        assert!(README.contains("{{name}}"));
        serde_json::from_str::<serde_json::Value>(SAMPLE_INPUT).unwrap();
    }

    #[test]
    fn a_non_empty_folder_is_refused_and_an_empty_one_accepted() {
        let dir = tempfile::tempdir().unwrap();
        refuse_non_empty(dir.path()).unwrap();
        std::fs::write(dir.path().join("x"), "").unwrap();

        let error = refuse_non_empty(dir.path()).unwrap_err();

        assert!(error.to_string().contains("not empty"), "{error}");
    }
}
