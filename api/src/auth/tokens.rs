//! The secrets Plat hands out: API keys and session tokens. Both are 256
//! random bits; the database keeps only their SHA-256 (a fast hash is enough
//! for values nobody can guess, and keeps the lookup one index probe). A
//! session's CSRF token is derived from its session token, so it needs no
//! storage and means nothing without the cookie.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

/// Every API key starts with this, so leaked keys are easy to recognise (and
/// for secret scanners to find).
pub const KEY_PREFIX: &str = "plat_";
/// Characters of a key shown in listings: `plat_` and 8 of the random part.
const SHOWN_CHARS: usize = KEY_PREFIX.len() + 8;

/// A new random secret: 32 bytes, base64url (43 characters).
fn random() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new API key, `plat_` and 43 random characters.
pub fn new_api_key() -> String {
    format!("{KEY_PREFIX}{}", random())
}

/// A password for an account nobody chose one for (`plat up`'s admin).
pub fn new_password() -> String {
    random()
}

/// A new session token (the cookie's value).
pub fn new_session_token() -> String {
    random()
}

/// A new password reset token: `platreset_` and 43 random characters (the
/// prefix tells it from an API key, for people and secret scanners).
pub fn new_reset_token() -> String {
    format!("platreset_{}", random())
}

/// The visible start of a key, stored and listed so people can tell keys apart.
pub fn shown_prefix(key: &str) -> String {
    key.chars().take(SHOWN_CHARS).collect()
}

/// What the database stores for a key or session token.
pub fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The CSRF token that goes with a session token: clients send it back in
/// the `X-CSRF-Token` header on every state-changing request.
pub fn csrf_token(session_token: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"plat-csrf:")
        .chain_update(session_token.as_bytes())
        .finalize();
    URL_SAFE_NO_PAD.encode(digest)
}

/// Compares a client's CSRF token with the expected one in constant time.
pub fn csrf_matches(sent: &str, session_token: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    let expected = csrf_token(session_token);
    sent.len() == expected.len() && bool::from(sent.as_bytes().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_random_and_shown_only_in_part() {
        let (a, b) = (new_api_key(), new_api_key());
        assert_ne!(a, b);
        assert!(a.starts_with("plat_") && a.len() == 48, "{a}");
        assert_eq!(shown_prefix(&a).len(), 13);
        assert!(a.starts_with(&shown_prefix(&a)));
        assert_ne!(hash(&a), hash(&b));
    }

    #[test]
    fn the_csrf_token_belongs_to_its_session_only() {
        let (one, other) = (new_session_token(), new_session_token());
        assert!(csrf_matches(&csrf_token(&one), &one));
        assert!(!csrf_matches(&csrf_token(&other), &one));
        assert!(!csrf_matches("", &one));
        assert_ne!(csrf_token(&one), one, "the token is not the session itself");
    }
}
