//! The HTTP client of the Plat API: a base URL, a bearer key, and problems
//! (`application/problem+json`, RFC 9457) turned into errors that carry the
//! server's `detail` and status, so the user reads what the server said.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How long a connection attempt may take before the server counts as
/// unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default budget of one request; calls that wait on the server (`?wait=`)
/// set their own.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of an unexpected (non-JSON) body an error quotes.
const QUOTED_BODY_CHARS: usize = 300;

/// Why a request did not give the answer we wanted.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server refused the request and said why.
    #[error("{detail} ({shown}){remedy}", shown = status_line(.status), remedy = hint(.status))]
    Problem {
        status: StatusCode,
        /// The problem `type` (`urn:plat:problem:not-found`, ...).
        kind: Option<String>,
        detail: String,
    },
    /// No answer at all: the server is down, the URL is wrong, the request
    /// timed out.
    #[error(
        "could not reach the Plat API at {url} (is it running? set --api-url or PLAT_API_URL)"
    )]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// An answer we cannot read: not JSON, or not the shape the contract says.
    #[error("unexpected answer from {url} ({status}): {what}")]
    Unexpected {
        url: String,
        status: StatusCode,
        what: String,
    },
    #[error("no API key: pass --api-key, set PLAT_API_KEY, or run `plat login`")]
    NoKey,
    #[error("invalid API URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
}

fn status_line(status: &StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

/// What to do about the statuses that have one obvious remedy.
fn hint(status: &StatusCode) -> &'static str {
    if *status == StatusCode::UNAUTHORIZED {
        "; check --api-key / PLAT_API_KEY, or run `plat login` again"
    } else {
        ""
    }
}

impl ApiError {
    /// The HTTP status of a problem; `None` for other errors.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ApiError::Problem { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the server answered 404 (not found, or no such route).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }
}

/// A successful answer, read whole.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The JSON body; `null` when the body is empty (204).
    pub body: Value,
    url: String,
}

impl ApiResponse {
    /// The body as `T`, or an error naming the route when it has another shape.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_value(self.body.clone()).map_err(|error| ApiError::Unexpected {
            url: self.url.clone(),
            status: self.status,
            what: format!("the body does not have the documented shape: {error}"),
        })
    }

    /// A header's value as text, if present and readable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A request body: JSON to serialise, or bytes that already are JSON (an
/// execution's input, sent as the user wrote it).
pub enum Body<'a> {
    Json(&'a Value),
    Raw(Vec<u8>),
}

/// The Plat API at one base URL, with one key.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base_url: Url,
    api_key: Option<String>,
}

impl ApiClient {
    pub fn new(base_url: &str, api_key: Option<String>) -> Result<Self, ApiError> {
        let bad = |reason: String| ApiError::BadUrl {
            url: base_url.to_owned(),
            reason,
        };
        let parsed = Url::parse(base_url).map_err(|e| bad(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
            return Err(bad("expected http://HOST[:PORT][/PATH]".to_owned()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("plat-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            http,
            base_url: parsed,
            api_key,
        })
    }

    pub fn base_url(&self) -> &str {
        self.base_url.as_str().trim_end_matches('/')
    }

    /// `GET` the route made of `segments` (each percent-encoded as needed).
    pub async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<ApiResponse, ApiError> {
        self.send(Method::GET, segments, query, None, REQUEST_TIMEOUT)
            .await
    }

    pub async fn post(&self, segments: &[&str], body: &Value) -> Result<ApiResponse, ApiError> {
        self.send(
            Method::POST,
            segments,
            &[],
            Some(Body::Json(body)),
            REQUEST_TIMEOUT,
        )
        .await
    }

    pub async fn put(&self, segments: &[&str], body: &Value) -> Result<ApiResponse, ApiError> {
        self.send(
            Method::PUT,
            segments,
            &[],
            Some(Body::Json(body)),
            REQUEST_TIMEOUT,
        )
        .await
    }

    pub async fn delete(&self, segments: &[&str]) -> Result<ApiResponse, ApiError> {
        self.send(Method::DELETE, segments, &[], None, REQUEST_TIMEOUT)
            .await
    }

    /// One request. Any status outside 2xx becomes [`ApiError::Problem`]
    /// with the server's `detail` (or, from a server that sent no problem,
    /// the start of its body).
    pub async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<Body<'_>>,
        timeout: Duration,
    ) -> Result<ApiResponse, ApiError> {
        let url = self.url(segments, query);
        let shown = url.to_string();
        let key = self.api_key.as_deref().ok_or(ApiError::NoKey)?;
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(key)
            .timeout(timeout);
        request = match body {
            Some(Body::Json(value)) => request.json(value),
            Some(Body::Raw(bytes)) => request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes),
            None => request,
        };
        let unreachable = |source| ApiError::Unreachable {
            url: shown.clone(),
            source,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(unreachable)?;
        let text = String::from_utf8_lossy(&bytes);
        if !status.is_success() {
            return Err(problem(status, &text));
        }
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|error| ApiError::Unexpected {
                url: shown.clone(),
                status,
                what: format!("not JSON ({error}): {}", quote(&text)),
            })?
        };
        Ok(ApiResponse {
            status,
            headers,
            body,
            url: shown,
        })
    }

    /// Opens the live stream (Server-Sent Events) at `segments`: the
    /// response, to be read as it arrives (no overall timeout). A refused
    /// request is an error as in [`Self::send`].
    pub async fn open_stream(
        &self,
        segments: &[&str],
        last_event_id: Option<&str>,
    ) -> Result<reqwest::Response, ApiError> {
        let url = self.url(segments, &[]);
        let shown = url.to_string();
        let key = self.api_key.as_deref().ok_or(ApiError::NoKey)?;
        let mut request = self
            .http
            .get(url)
            .bearer_auth(key)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let unreachable = |source| ApiError::Unreachable {
            url: shown.clone(),
            source,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.map_err(unreachable)?;
            return Err(problem(status, &String::from_utf8_lossy(&bytes)));
        }
        Ok(response)
    }

    /// The base URL with `segments` appended: a base with a path (a proxy's
    /// prefix) keeps it.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base_url.clone();
        {
            // `cannot_be_a_base` was ruled out in `new`.
            let mut path = url.path_segments_mut().expect("an http URL has a path");
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }
}

/// The error for a refused request: the problem's `detail` when the body is
/// one, else what the body says.
fn problem(status: StatusCode, text: &str) -> ApiError {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|body| body.get(name))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let detail = field("detail")
        .or_else(|| field("title"))
        .unwrap_or_else(|| {
            if text.trim().is_empty() {
                "the server gave no reason".to_owned()
            } else {
                quote(text)
            }
        });
    ApiError::Problem {
        status,
        kind: field("type"),
        detail,
    }
}

fn quote(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(QUOTED_BODY_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_shown_as_its_detail_and_status() {
        let error = problem(
            StatusCode::CONFLICT,
            r#"{"type":"urn:plat:problem:conflict","title":"Conflict","status":409,"detail":"version 0.1.0 is not greater than 0.2.0"}"#,
        );

        assert_eq!(
            error.to_string(),
            "version 0.1.0 is not greater than 0.2.0 (HTTP 409 Conflict)"
        );
        assert!(
            matches!(error, ApiError::Problem { kind: Some(ref k), .. } if k == "urn:plat:problem:conflict")
        );
    }

    #[test]
    fn a_refused_key_says_how_to_fix_it() {
        let error = problem(
            StatusCode::UNAUTHORIZED,
            r#"{"detail":"the API key is not valid"}"#,
        );

        let text = error.to_string();
        assert!(
            text.starts_with("the API key is not valid (HTTP 401 Unauthorized)"),
            "{text}"
        );
        assert!(text.contains("plat login"), "{text}");
    }

    #[test]
    fn a_body_that_is_no_problem_is_quoted() {
        let error = problem(StatusCode::BAD_GATEWAY, "upstream down");

        assert_eq!(error.to_string(), "upstream down (HTTP 502 Bad Gateway)");
    }

    #[test]
    fn routes_are_appended_to_the_base_path_and_encoded() {
        let client = ApiClient::new("http://example.test/plat/", Some("k".into())).unwrap();

        let url = client.url(
            &["functions", "a b", "versions", "1.0.0+x"],
            &[("tag", "x&y".into())],
        );

        assert_eq!(
            url.as_str(),
            "http://example.test/plat/functions/a%20b/versions/1.0.0+x?tag=x%26y"
        );
    }

    #[test]
    fn a_url_that_is_not_http_is_refused() {
        assert!(ApiClient::new("localhost:8080", None).is_err());
        assert!(ApiClient::new("ftp://x", None).is_err());
    }
}
