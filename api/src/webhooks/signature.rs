//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): the
//! secret is shown as `whsec_` and the base64 of its bytes; a message is
//! signed as `v1,` and the base64 of HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}`, keyed with those bytes. The
//! official libraries verify it (tests/tests/webhooks.rs).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// What a secret shows as, before its base64.
const PREFIX: &str = "whsec_";
/// 32 random bytes: the size of the HMAC-SHA256 block's output, as Svix's.
const SECRET_BYTES: usize = 32;

/// A new signing secret: its bytes (to store, sealed) and how the user
/// sees it (once).
pub(crate) fn new_secret() -> (Vec<u8>, String) {
    let mut bytes = vec![0; SECRET_BYTES];
    rand::thread_rng().fill_bytes(&mut bytes);
    let shown = format!("{PREFIX}{}", STANDARD.encode(&bytes));
    (bytes, shown)
}

/// The `webhook-signature` header's value for one message.
pub(crate) fn sign(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_specification_example() {
        // The example of the Standard Webhooks specification.
        let secret = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn new_secrets_are_random_and_shown_with_their_prefix() {
        let (bytes, shown) = new_secret();
        assert_eq!(bytes.len(), SECRET_BYTES);
        assert_eq!(shown, format!("whsec_{}", STANDARD.encode(&bytes)));
        assert_ne!(new_secret().0, bytes);
    }
}
