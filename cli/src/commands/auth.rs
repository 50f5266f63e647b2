//! `plat login` and `plat logout`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::{Command, Stdio};

use anyhow::Context as _;
use clap::Args;
use serde_json::json;

use super::{shown, Context, DEFAULT_API_URL};
use crate::client::ApiClient;
use crate::credentials::{self, Credentials};
use crate::output;

/// Takes the global `--api-url` and `--api-key`; without a key, it is read
/// from stdin (without echo on a terminal).
#[derive(Debug, Args)]
pub struct Login {}

pub async fn login(context: &Context, _login: Login) -> anyhow::Result<()> {
    let api_url = match &context.options.api_url {
        Some(url) => url.clone(),
        None => credentials::load()?
            .map(|stored| stored.api_url)
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned()),
    };
    let api_key = match &context.options.api_key {
        Some(key) => key.clone(),
        None => read_key()?,
    };
    if api_key.is_empty() {
        anyhow::bail!("no API key given");
    }
    let client = ApiClient::new(&api_url, Some(api_key.clone()))?;
    // Any authenticated route checks the key; this one also says whose it is.
    let me = client
        .get(&["me"], &[])
        .await
        .with_context(|| format!("checking the API key with {api_url}"))?
        .body;
    let path = credentials::store(&Credentials {
        api_url: client.base_url().to_owned(),
        api_key,
    })?;
    if context.json() {
        output::print_json(&json!({
            "apiUrl": client.base_url(),
            "email": me["email"],
            "role": me["role"],
            "credentialsFile": shown(&path),
        }));
    } else {
        println!(
            "Logged in to {} as {} ({}). The key is stored in {}",
            client.base_url(),
            output::cell(&me, "email"),
            output::cell(&me, "role"),
            shown(&path)
        );
    }
    Ok(())
}

pub fn logout(context: &Context) -> anyhow::Result<()> {
    let (removed, path) = credentials::remove()?;
    if context.json() {
        output::print_json(&json!({ "removed": removed, "credentialsFile": shown(&path) }));
    } else if removed {
        println!("Logged out: removed {}", shown(&path));
    } else {
        println!("Not logged in (no {})", shown(&path));
    }
    Ok(())
}

/// The key from stdin: typed at a prompt without echo on a terminal, or the
/// first line of what is piped in.
fn read_key() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    if interactive {
        eprint!("API key: ");
        std::io::stderr().flush()?;
        set_echo(false);
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if interactive {
        set_echo(true);
        eprintln!();
    }
    read.context("reading the API key from stdin")?;
    Ok(line.trim().to_owned())
}

/// Turns the terminal's echo off or on with `stty` (on the terminal that is
/// our stdin), so a typed key is not shown. Best effort: without `stty` the
/// key is echoed.
fn set_echo(on: bool) {
    let _ = Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(Stdio::inherit())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
