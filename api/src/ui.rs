//! The dashboard at `/ui` (docs/dashboard.md): a small front end of plain
//! HTML, CSS and JavaScript modules in `api/ui/`, with no build step. The
//! pages are a client of the JSON API with the session cookie, so they can
//! show and do exactly what the signed-in user may; these routes only hand
//! out the files, which hold no data and so need no credentials.
//!
//! Release builds carry the files in the binary; debug builds read them from
//! `api/ui/` on every request (rust-embed), so editing the front end needs
//! no rebuild.

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{Error, Result};
use crate::extract::Path;

#[derive(rust_embed::Embed)]
#[folder = "ui/"]
struct Files;

/// What the browser may do on a dashboard page: load this origin's scripts,
/// styles and API, and nothing else. Function outputs and logs are shown as
/// text, never as markup; this is the second line of defence.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

pub fn router() -> crate::openapi::ApiRouter {
    OpenApiRouter::new()
        .routes(routes!(page))
        .routes(routes!(asset))
}

/// The dashboard (its pages are addressed after `#`, e.g. `/ui#/functions`).
#[utoipa::path(
    get,
    path = "/ui",
    tag = "meta",
    operation_id = "getDashboard",
    responses((status = 200, description = "The dashboard's page", content_type = "text/html", body = String)),
)]
async fn page(request: Request) -> Result<Response> {
    serve("index.html", request.headers())
}

/// A file of the dashboard: its scripts, styles and icons.
#[utoipa::path(
    get,
    path = "/ui/{asset}",
    tag = "meta",
    operation_id = "getDashboardAsset",
    params(("asset" = String, Path, description = "A file name such as `app.js` or `style.css`")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript"),
            (String = "text/css"),
            (String = "text/html"),
            (String = "image/svg+xml"),
            (Vec<u8> = "image/png"),
        )),
        (status = 304, description = "The copy the browser has (`If-None-Match`) is current"),
        (status = 404, description = "No such file"),
    ),
)]
async fn asset(Path(name): Path<String>, request: Request) -> Result<Response> {
    serve(&name, request.headers())
}

fn serve(name: &str, request: &HeaderMap) -> Result<Response> {
    let not_found = || Error::NotFound(format!("no dashboard file {name:?}"));
    // One plain file name: debug builds read from disk, and `%2F` decodes
    // to a slash.
    if name.starts_with('.') || name.contains(['/', '\\']) {
        return Err(not_found());
    }
    let content_type = content_type(name).ok_or_else(not_found)?;
    let file = Files::get(name).ok_or_else(not_found)?;
    // Revalidated on every load (`no-cache`) and answered with a 304 when
    // unchanged: a new release never runs against yesterday's scripts.
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..12]));
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::ETAG,
            HeaderValue::from_str(&etag).expect("hex is a valid header"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ),
    ];
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    if fresh {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    Ok((headers, file.data.into_owned()).into_response())
}

/// The types of the files the dashboard is made of; anything else is not
/// served, whatever lies in the folder.
fn content_type(name: &str) -> Option<&'static str> {
    let (_, extension) = name.rsplit_once('.')?;
    Some(match extension {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        _ => return None,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
