//! The session cookie. By default `__Host-plat_session; Secure; HttpOnly;
//! SameSite=Strict; Path=/` and no `Domain`: a browser then only sends it
//! over HTTPS, never shows it to scripts or other sites, and, for the
//! `__Host-` prefix, only accepts it from this very host over HTTPS, so a
//! neighbouring subdomain or a plain-HTTP man in the middle cannot plant a
//! session of its choosing (session fixation). See
//! <https://developer.mozilla.org/en-US/docs/Web/HTTP/Reference/Headers/Set-Cookie#cookie_prefixes>.
//!
//! `PLAT_COOKIE_SECURE=false` (which `plat up` sets, as it serves plain
//! HTTP) drops `Secure`; the prefix must then go too, since browsers refuse
//! a `__Host-` cookie without `Secure`: the name becomes `plat_session`.

use axum::http::{header, HeaderMap, HeaderValue};
use cookie::{Cookie, SameSite};

/// The cookie's name when it is `Secure` (the default).
pub const SECURE_NAME: &str = "__Host-plat_session";
/// The cookie's name when the operator turned `Secure` off.
pub const PLAIN_NAME: &str = "plat_session";

#[derive(Debug, Clone, Copy)]
pub struct SessionCookie {
    secure: bool,
}

impl SessionCookie {
    pub fn new(secure: bool) -> Self {
        Self { secure }
    }

    pub fn name(self) -> &'static str {
        if self.secure {
            SECURE_NAME
        } else {
            PLAIN_NAME
        }
    }

    /// The `Set-Cookie` value that stores `token` for `max_age_secs`.
    pub fn set(self, token: &str, max_age_secs: i64) -> HeaderValue {
        self.header(token, max_age_secs)
    }

    /// The `Set-Cookie` value that makes the browser forget the cookie.
    pub fn clear(self) -> HeaderValue {
        self.header("", 0)
    }

    fn header(self, value: &str, max_age_secs: i64) -> HeaderValue {
        let cookie = Cookie::build((self.name(), value))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .max_age(cookie::time::Duration::seconds(max_age_secs))
            .secure(self.secure)
            .build();
        // Tokens are URL-safe base64: always a valid header value.
        HeaderValue::from_str(&cookie.to_string()).expect("a cookie of visible ASCII")
    }

    /// The session token from the request's `Cookie` headers, if any. Only
    /// the configured name counts: with `Secure` on, a `plat_session` a
    /// subdomain or plain-HTTP attacker planted is ignored.
    pub fn token(self, headers: &HeaderMap) -> Option<&str> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|cookie| cookie.name() == self.name())
            .and_then(|cookie| cookie.value_raw())
            .filter(|value| !value.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secure_cookie_has_the_host_prefix_and_reads_only_that_name() {
        let cookie = SessionCookie::new(true);
        let set = cookie.set("tok", 60);
        assert_eq!(
            set.to_str().unwrap(),
            "__Host-plat_session=tok; HttpOnly; SameSite=Strict; Secure; Path=/; Max-Age=60"
        );
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "plat_session=planted".parse().unwrap());
        assert_eq!(cookie.token(&headers), None);
        headers.append(
            header::COOKIE,
            "a=b; __Host-plat_session=tok".parse().unwrap(),
        );
        assert_eq!(cookie.token(&headers), Some("tok"));
    }

    #[test]
    fn a_plain_http_cookie_drops_secure_and_the_prefix() {
        let cookie = SessionCookie::new(false);
        assert_eq!(
            cookie.clear().to_str().unwrap(),
            "plat_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
        );
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "plat_session=tok".parse().unwrap());
        assert_eq!(cookie.token(&headers), Some("tok"));
    }
}
