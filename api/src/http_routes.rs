//! HTTP routes: a function answers requests at `/run/{name}` and, if its
//! route says so, under a path prefix of its own (docs/triggers.md, "HTTP
//! routes"). Each request becomes an execution of the function's active
//! version, queued like any other (`executions::queue_and_wait`), and the
//! function's output becomes the response (`envelope`).
//!
//! Configuring a route is an ordinary documented endpoint (`manage`). The
//! requests to routes are not: their paths are the operators', their
//! bodies and answers the functions'. They are answered by a middleware in
//! front of every request the API's own router does not match (`serve`),
//! so a route can never answer under one of the API's paths, and the
//! OpenAPI document describes only the API (docs/api.md).

mod envelope;
mod manage;
mod serve;

use std::collections::BTreeSet;
use std::sync::Arc;

use utoipa::openapi::OpenApi;

pub use manage::router;
pub use serve::{serve, Dispatch};

/// Where `/run/{name}` routes live; no prefix may start with it.
const RUN: &str = "run";

/// The first segments of the API's own paths (`functions`, `healthz`,
/// `ui`, ...), and `run`: a custom prefix may start with none of them, and
/// a request under one of them is never a route's.
#[derive(Debug, Default)]
pub struct ApiPaths(BTreeSet<String>);

impl ApiPaths {
    /// The paths of the documents the API's routers were built with: every
    /// route is in one, so a new endpoint reserves its path by existing.
    pub fn of(documents: &[&OpenApi]) -> Arc<Self> {
        let mut segments: BTreeSet<String> = documents
            .iter()
            .flat_map(|document| document.paths.paths.keys())
            .map(|path| first_segment(path).to_ascii_lowercase())
            .collect();
        segments.insert(RUN.to_owned());
        Arc::new(Self(segments))
    }

    /// Whether paths starting with `segment` are the API's (compared
    /// without case, so `/Functions/x` cannot pose as the API either).
    fn reserves(&self, segment: &str) -> bool {
        segment.is_empty() || self.0.contains(&segment.to_ascii_lowercase())
    }
}

/// `functions` of `/functions/{function}`; empty for `/`.
fn first_segment(path: &str) -> &str {
    path.trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_paths_reserve_their_first_segment_and_run() {
        let mut document = OpenApi::default();
        for path in ["/functions/{function}/route", "/healthz", "/openapi.json"] {
            document
                .paths
                .paths
                .insert(path.to_owned(), Default::default());
        }
        let paths = ApiPaths::of(&[&document]);
        for reserved in [
            "functions",
            "Functions",
            "healthz",
            "openapi.json",
            "run",
            "",
        ] {
            assert!(paths.reserves(reserved), "{reserved}");
        }
        assert!(!paths.reserves("functions-public"));
        assert!(!paths.reserves("hooks"));
    }
}
