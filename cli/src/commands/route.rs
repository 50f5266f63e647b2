//! `plat route show NAME`, `plat route set NAME [--public] [--prefix P]
//! [--header H]... [--disabled] [--rate R --burst B]`, `plat route rm NAME`:
//! a function's HTTP route (docs/triggers.md, "HTTP routes").

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::Context;
use crate::output;

#[derive(Debug, Subcommand)]
pub enum Route {
    /// Show where the function answers HTTP requests, and who may call it.
    Show(Named),
    /// Create or replace the function's route (admins).
    Set(Set),
    /// Remove the function's route: its URLs answer 404 at once (admins).
    Rm(Named),
}

#[derive(Debug, Args)]
pub struct Named {
    /// The function's name (or id).
    pub name: String,
}

#[derive(Debug, Args)]
pub struct Set {
    /// The function's name (or id).
    pub name: String,
    /// Anyone may call it, without credentials; runs count as yours.
    #[arg(long)]
    pub public: bool,
    /// Also answer under this path, e.g. /hooks/github.
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
    /// A request header to pass to the function (repeatable).
    #[arg(long = "header", value_name = "H")]
    pub headers: Vec<String>,
    /// Keep the route but answer 404 for now.
    #[arg(long)]
    pub disabled: bool,
    /// A public route's requests per second per client address (0: no limit).
    #[arg(long, value_name = "R", requires = "burst")]
    pub rate: Option<f64>,
    /// A public route's burst per client address.
    #[arg(long, value_name = "B", requires = "rate")]
    pub burst: Option<u32>,
}

pub async fn run(context: &Context, route: Route) -> anyhow::Result<()> {
    let client = context.client()?;
    match route {
        Route::Show(Named { name }) => {
            let route = client.get(&["functions", &name, "route"], &[]).await?.body;
            print(context, client.base_url(), &route);
        }
        Route::Set(set) => {
            let mut body = json!({
                "enabled": !set.disabled,
                "public": set.public,
                "pathPrefix": set.prefix,
                "forwardHeaders": set.headers,
            });
            if let (Some(per_sec), Some(burst)) = (set.rate, set.burst) {
                body["rateLimit"] = json!({ "perSec": per_sec, "burst": burst });
            }
            let route = client
                .put(&["functions", &set.name, "route"], &body)
                .await?
                .body;
            print(context, client.base_url(), &route);
        }
        Route::Rm(Named { name }) => {
            client.delete(&["functions", &name, "route"]).await?;
            if !context.json() {
                println!("{name} no longer answers HTTP requests");
            }
        }
    }
    Ok(())
}

fn print(context: &Context, base_url: &str, route: &Value) {
    if context.json() {
        output::print_json(route);
        return;
    }
    let base = base_url.trim_end_matches('/');
    for url in route["urls"].as_array().into_iter().flatten() {
        println!("{base}{}", url.as_str().unwrap_or_default());
    }
    let access = if route["public"] == true {
        "public (no credentials)"
    } else {
        "authenticated (API key or session)"
    };
    let state = if route["enabled"] == true {
        "enabled"
    } else {
        "disabled"
    };
    println!("{access}, {state}");
    if route["public"] == true {
        println!(
            "rate limit: {}/s per client address, bursts of {}",
            output::text(&route["rateLimit"]["perSec"]),
            output::text(&route["rateLimit"]["burst"])
        );
    }
    let headers: Vec<&str> = route["forwardHeaders"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if headers.is_empty() {
        println!("headers passed: none");
    } else {
        println!("headers passed: {}", headers.join(", "));
    }
}
