//! The two documented envelopes of an HTTP route (docs/triggers.md, "HTTP
//! routes"): how a request becomes the function's input, and how the
//! function's output becomes the response. Pure functions, no I/O.
//!
//! The response envelope is AWS Lambda's proxy format (`statusCode`,
//! `headers`, `body`, `isBase64Encoded`), so handlers written for API
//! Gateway or Netlify Functions answer the same here; any other output is
//! sent as JSON with 200, the plain case.

use axum::extract::Query;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::executions::{nesting_depth, MAX_INPUT_DEPTH};

/// The request as the function sees it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestInput {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path below the route's prefix, `/` at least: a request to
    /// `/run/hello/users/7` is `/users/7` to function `hello`.
    pub path: String,
    /// Each query parameter, percent-decoded; a repeated one has its
    /// values joined with `,` (as API Gateway's version 2 payload).
    pub query: Map<String, Value>,
    /// The query string as sent, without the `?`.
    pub raw_query: String,
    /// The route's `forwardHeaders` the request carried, lower case; a
    /// repeated header has its values joined with `, ` (`; ` for `cookie`).
    pub headers: Map<String, Value>,
    /// JSON when the content type is JSON, else the text, else base64.
    pub body: Value,
    /// Whether `body` is the base64 of bytes that are not UTF-8 text.
    pub is_base64_encoded: bool,
}

/// Why a request cannot become an input (a 400).
#[derive(Debug, PartialEq, Eq)]
pub struct BadBody(pub String);

/// The body as the input holds it, and whether it is base64. An empty body
/// is `null`; a JSON content type (`application/json`, `…+json`) must
/// carry valid JSON, which the function gets parsed.
pub fn body(content_type: Option<&str>, bytes: &[u8]) -> Result<(Value, bool), BadBody> {
    if bytes.is_empty() {
        return Ok((Value::Null, false));
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        return Ok((Value::String(encoded), true));
    };
    if content_type.is_some_and(is_json) {
        // The input wraps the body in one more level, and must stay
        // within execute's (serde_json's) limit to be read back.
        let most = MAX_INPUT_DEPTH - 1;
        if nesting_depth(text.as_bytes()) > most {
            return Err(BadBody(format!(
                "the JSON body is nested too deeply: at most {most} levels of arrays and objects"
            )));
        }
        let value = serde_json::from_str(text).map_err(|error| {
            BadBody(format!(
                "the body is not valid JSON, though its Content-Type says it is: {error}"
            ))
        })?;
        return Ok((value, false));
    }
    Ok((Value::String(text.to_owned()), false))
}

/// `application/json`, `application/problem+json` and the like.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The query string's parameters, percent-decoded (`+` is a space, as in
/// forms); a query string that does not decode is left to `rawQuery`.
pub fn query(uri: &Uri) -> Map<String, Value> {
    let pairs = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|Query(pairs)| pairs)
        .unwrap_or_default();
    let mut query = Map::new();
    for (name, value) in pairs {
        match query.get_mut(&name) {
            Some(Value::String(joined)) => {
                joined.push(',');
                joined.push_str(&value);
            }
            _ => {
                query.insert(name, Value::String(value));
            }
        }
    }
    query
}

/// The request headers named in `forward` (lower case), except those
/// [`never_forwarded`] for this route. Values that are not text are
/// left out.
pub fn headers(
    request: &HeaderMap,
    forward: &[String],
    public: bool,
    session_cookies: &[&str],
) -> Map<String, Value> {
    let mut headers = Map::new();
    for name in forward {
        if never_forwarded(name, public) {
            continue;
        }
        let separator = if name == "cookie" { "; " } else { ", " };
        let values: Vec<String> = request
            .get_all(name.as_str())
            .iter()
            .filter_map(|value| value.to_str().ok())
            .map(|value| {
                if name == "cookie" {
                    without_cookies(value, session_cookies)
                } else {
                    value.to_owned()
                }
            })
            .filter(|value| !value.is_empty())
            .collect();
        if !values.is_empty() {
            headers.insert(name.clone(), Value::String(values.join(separator)));
        }
    }
    headers
}

/// Headers a route never passes: on an authenticated route, the caller's
/// Plat credentials (`Authorization`, `X-CSRF-Token`), which a function has
/// no business holding. A public route reads no credentials, so there they
/// are the function's own.
pub fn never_forwarded(name: &str, public: bool) -> bool {
    !public && matches!(name, "authorization" | "x-csrf-token")
}

/// A `Cookie` header without Plat's session cookie: a function answers on
/// the API's own origin, so browsers send it the dashboard's session too.
fn without_cookies(value: &str, names: &[&str]) -> String {
    value
        .split(';')
        .map(str::trim)
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or_default().trim();
            !pair.is_empty() && !names.contains(&name)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What the function answered, ready to send.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Why an output that is a response envelope cannot be sent (a 502).
#[derive(Debug, PartialEq, Eq)]
pub struct BadEnvelope(pub String);

/// The keys of a response envelope; an object with `statusCode` and no
/// other keys than these is one.
const ENVELOPE_KEYS: &[&str] = &["statusCode", "headers", "body", "isBase64Encoded"];

/// The response for a function's `output`: its envelope, or the output as
/// JSON with 200. `session_cookies` may not be set by a function.
pub fn answer(output: &Value, session_cookies: &[&str]) -> Result<Answer, BadEnvelope> {
    match output {
        Value::Object(fields)
            if fields.contains_key("statusCode")
                && fields
                    .keys()
                    .all(|key| ENVELOPE_KEYS.contains(&key.as_str())) =>
        {
            from_envelope(fields, session_cookies)
        }
        plain => Ok(json_answer(StatusCode::OK, HeaderMap::new(), plain)),
    }
}

fn json_answer(status: StatusCode, mut headers: HeaderMap, value: &Value) -> Answer {
    if !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    Answer {
        status,
        headers,
        body: serde_json::to_vec(value).expect("a JSON value serializes"),
    }
}

fn from_envelope(
    fields: &Map<String, Value>,
    session_cookies: &[&str],
) -> Result<Answer, BadEnvelope> {
    let status = fields["statusCode"]
        .as_u64()
        .and_then(|code| u16::try_from(code).ok())
        .filter(|code| (200..=599).contains(code))
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| {
            BadEnvelope(format!(
                "`statusCode` must be an integer from 200 to 599, got {}",
                fields["statusCode"]
            ))
        })?;
    let headers = response_headers(fields.get("headers"), session_cookies)?;
    let base64 = match fields.get("isBase64Encoded") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => *flag,
        Some(other) => {
            return Err(BadEnvelope(format!(
                "`isBase64Encoded` must be true or false, got {other}"
            )))
        }
    };
    match fields.get("body") {
        None | Some(Value::Null) => Ok(Answer {
            status,
            headers,
            body: Vec::new(),
        }),
        Some(Value::String(text)) if base64 => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|error| BadEnvelope(format!("`body` is not valid base64: {error}")))?;
            Ok(with_default_type(
                status,
                headers,
                bytes,
                "application/octet-stream",
            ))
        }
        Some(Value::String(text)) => Ok(with_default_type(
            status,
            headers,
            text.clone().into_bytes(),
            "text/plain; charset=utf-8",
        )),
        // Lambda wants a string; any other JSON is sent as JSON, the
        // friendlier reading of what the function meant.
        Some(value) if !base64 => Ok(json_answer(status, headers, value)),
        Some(_) => Err(BadEnvelope(
            "`body` must be a string when `isBase64Encoded` is true".to_owned(),
        )),
    }
}

fn with_default_type(
    status: StatusCode,
    mut headers: HeaderMap,
    body: Vec<u8>,
    content_type: &'static str,
) -> Answer {
    if !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    Answer {
        status,
        headers,
        body,
    }
}

/// The envelope's `headers`: an object of names to a string (a number or
/// boolean is written as text) or an array of them (one header each,
/// e.g. several `Set-Cookie`).
fn response_headers(
    headers: Option<&Value>,
    session_cookies: &[&str],
) -> Result<HeaderMap, BadEnvelope> {
    let mut map = HeaderMap::new();
    let fields = match headers {
        None | Some(Value::Null) => return Ok(map),
        Some(Value::Object(fields)) => fields,
        Some(other) => {
            return Err(BadEnvelope(format!(
                "`headers` must be an object of header names to values, got {other}"
            )))
        }
    };
    for (name, values) in fields {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| BadEnvelope(format!("{name:?} is not a valid header name")))?;
        if let Some(why) = refused_response_header(&header) {
            return Err(BadEnvelope(format!(
                "a function may not set the `{header}` header: {why}"
            )));
        }
        let list = match values {
            Value::Array(items) => items.as_slice(),
            single => std::slice::from_ref(single),
        };
        for value in list {
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Number(_) | Value::Bool(_) => value.to_string(),
                other => {
                    return Err(BadEnvelope(format!(
                        "the value of header `{header}` must be a string, got {other}"
                    )))
                }
            };
            if header == header::SET_COOKIE && sets_cookie(&text, session_cookies) {
                return Err(BadEnvelope(format!(
                    "a function may not set Plat's session cookie ({})",
                    session_cookies.join(", ")
                )));
            }
            let value = HeaderValue::from_str(&text).map_err(|_| {
                BadEnvelope(format!(
                    "the value of header `{header}` is not a valid header value"
                ))
            })?;
            map.append(header.clone(), value);
        }
    }
    Ok(map)
}

/// Why a function may not set `name`, if it may not: headers about the
/// connection rather than the response (RFC 9110 §7.6.1), the length Plat
/// computes, and the ids Plat sets itself.
pub fn refused_response_header(name: &HeaderName) -> Option<&'static str> {
    match name.as_str() {
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "te"
        | "trailer" | "upgrade" | "proxy-authenticate" => {
            Some("it is about the connection, which Plat's server manages")
        }
        "content-length" => Some("Plat computes the length of the body"),
        "x-request-id" | "plat-execution-id" => Some("Plat sets it"),
        _ => None,
    }
}

/// Whether a `Set-Cookie` value sets one of `names`.
fn sets_cookie(value: &str, names: &[&str]) -> bool {
    let name = value
        .split(';')
        .next()
        .unwrap_or_default()
        .split('=')
        .next()
        .unwrap_or_default()
        .trim();
    names
        .iter()
        .any(|session| session.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SESSION: &[&str] = &["__Host-plat_session", "plat_session"];

    #[test]
    fn a_json_body_is_parsed_text_stays_text_and_bytes_are_base64() {
        assert_eq!(
            body(Some("application/json; charset=utf-8"), br#"{"a":1}"#),
            Ok((json!({"a": 1}), false))
        );
        assert_eq!(
            body(Some("application/vnd.api+json"), b"[1]"),
            Ok((json!([1]), false))
        );
        assert_eq!(
            body(Some("text/plain"), b"{\"a\":1}"),
            Ok((json!("{\"a\":1}"), false))
        );
        assert_eq!(body(None, b""), Ok((Value::Null, false)));
        assert_eq!(
            body(Some("application/octet-stream"), &[0xff, 0x00]),
            Ok((json!("/wA="), true))
        );
        assert!(body(Some("application/json"), b"{nope").is_err());
    }

    #[test]
    fn repeated_query_parameters_are_joined_and_decoded() {
        assert_eq!(
            Value::Object(query(&"/x?a=1&b=x%20y&a=2&flag".parse().unwrap())),
            json!({"a": "1,2", "b": "x y", "flag": ""})
        );
    }

    #[test]
    fn only_chosen_headers_pass_and_never_the_session_or_a_private_routes_credentials() {
        let mut request = HeaderMap::new();
        request.insert("x-one", "1".parse().unwrap());
        request.insert("x-other", "2".parse().unwrap());
        request.insert("authorization", "Bearer plat_secret".parse().unwrap());
        request.insert(
            "cookie",
            "theme=dark; __Host-plat_session=s3cret; lang=en"
                .parse()
                .unwrap(),
        );
        let forward = ["x-one", "authorization", "cookie"].map(String::from);

        let private = headers(&request, &forward, false, SESSION);
        let public = headers(&request, &forward, true, SESSION);

        assert_eq!(
            Value::Object(private),
            json!({"x-one": "1", "cookie": "theme=dark; lang=en"})
        );
        assert_eq!(public["authorization"], "Bearer plat_secret");
    }

    #[test]
    fn plain_output_is_json_with_200() {
        let answer = answer(&json!({"hello": "world"}), SESSION).unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(answer.body, br#"{"hello":"world"}"#);
        // An object with other keys is not an envelope, even with statusCode.
        let not_envelope = json!({"statusCode": 201, "extra": true});
        assert_eq!(
            super::answer(&not_envelope, SESSION).unwrap().status,
            StatusCode::OK
        );
    }

    #[test]
    fn an_envelope_sets_status_headers_and_body() {
        let answer = answer(
            &json!({
                "statusCode": 201,
                "headers": {"x-made": "yes", "set-cookie": ["a=1", "b=2"], "x-n": 3},
                "body": "created",
            }),
            SESSION,
        )
        .unwrap();
        assert_eq!(answer.status, StatusCode::CREATED);
        assert_eq!(answer.headers["x-made"], "yes");
        assert_eq!(answer.headers["x-n"], "3");
        assert_eq!(answer.headers.get_all("set-cookie").iter().count(), 2);
        assert_eq!(
            answer.headers[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert_eq!(answer.body, b"created");

        let binary = super::answer(
            &json!({"statusCode": 200, "body": "/wA=", "isBase64Encoded": true}),
            SESSION,
        )
        .unwrap();
        assert_eq!(binary.body, [0xff, 0x00]);
        let json_body =
            super::answer(&json!({"statusCode": 404, "body": {"e": 1}}), SESSION).unwrap();
        assert_eq!(json_body.headers[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn an_envelope_may_not_set_connection_headers_or_the_session_cookie() {
        for refused in [
            json!({"statusCode": 200, "headers": {"Transfer-Encoding": "chunked"}}),
            json!({"statusCode": 200, "headers": {"content-length": "1"}}),
            json!({"statusCode": 200, "headers": {"set-cookie": "__Host-plat_session=x; Path=/"}}),
            json!({"statusCode": 99}),
            json!({"statusCode": "200"}),
            json!({"statusCode": 200, "body": "%%", "isBase64Encoded": true}),
        ] {
            assert!(answer(&refused, SESSION).is_err(), "{refused}");
        }
    }
}
