//! Environment values at rest: encrypted with the operator's key
//! (`PLAT_SECRETS_KEY`) by the API, decrypted by the executors just before a
//! run. Nothing else ever sees them in clear.
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per write (random nonces
//! are safe at that size), and the environment's id as associated data, so
//! a ciphertext copied onto another environment's row fails to decrypt.
//! Stored form: `[format = 1][nonce: 24 bytes][ciphertext and tag]`; the
//! leading byte leaves room for key rotation later.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use uuid::Uuid;

/// The one format written today.
const FORMAT_V1: u8 = 1;
const NONCE_BYTES: usize = 24;

/// Environment variables: name → value.
pub type Variables = BTreeMap<String, String>;

/// The key environments are encrypted with: 32 bytes, given as base64 (44
/// characters) or hex (64). `Debug` never shows it.
#[derive(Clone)]
pub struct SecretsKey(Key);

/// Why a key or a stored environment could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The configured key is not 32 bytes of base64 or hex.
    #[error("the secrets key must be 32 bytes, written as base64 (44 characters) or hex (64 characters)")]
    BadKey,
    /// The stored value was written with another key, or was altered.
    #[error("the stored environment cannot be decrypted with this secrets key (was PLAT_SECRETS_KEY changed?)")]
    Undecryptable,
}

impl SecretsKey {
    /// A new random key, as base64: what `plat up` generates for itself.
    pub fn generate() -> String {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        base64::engine::general_purpose::STANDARD.encode(key)
    }

    /// Encrypts `variables` for the environment `environment_id`.
    pub fn seal(&self, environment_id: Uuid, variables: &Variables) -> Vec<u8> {
        let plaintext = serde_json::to_vec(variables).expect("a string map serialises");
        self.seal_bytes(environment_id, &plaintext)
    }

    /// Decrypts what [`SecretsKey::seal`] stored for `environment_id`.
    pub fn open(&self, environment_id: Uuid, stored: &[u8]) -> Result<Variables, SecretsError> {
        let plaintext = self.open_bytes(environment_id, stored)?;
        serde_json::from_slice(&plaintext).map_err(|_| SecretsError::Undecryptable)
    }

    /// Encrypts `plaintext` for the row `owner` (an environment, or the
    /// function whose webhook signing secret it is).
    pub fn seal_bytes(&self, owner: Uuid, plaintext: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = XChaCha20Poly1305::new(&self.0)
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: owner.as_bytes(),
                },
            )
            .expect("encryption into a Vec cannot fail");
        let mut stored = Vec::with_capacity(1 + NONCE_BYTES + ciphertext.len());
        stored.push(FORMAT_V1);
        stored.extend_from_slice(&nonce);
        stored.extend_from_slice(&ciphertext);
        stored
    }

    /// Decrypts what [`SecretsKey::seal_bytes`] stored for `owner`.
    pub fn open_bytes(&self, owner: Uuid, stored: &[u8]) -> Result<Vec<u8>, SecretsError> {
        let (format, rest) = stored.split_first().ok_or(SecretsError::Undecryptable)?;
        if *format != FORMAT_V1 || rest.len() < NONCE_BYTES {
            return Err(SecretsError::Undecryptable);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
        XChaCha20Poly1305::new(&self.0)
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: owner.as_bytes(),
                },
            )
            .map_err(|_| SecretsError::Undecryptable)
    }
}

/// Which part of a function version a sealed value is: the associated data
/// it is sealed with, so a source copied onto another version's row (or
/// into its lockfile column) fails to open.
#[derive(Debug, Clone, Copy)]
pub enum VersionPart {
    /// The function's source.
    Source,
    /// The lockfile its dependencies resolved to.
    Lockfile,
}

impl VersionPart {
    /// The owner id [`SecretsKey::seal_bytes`] takes for this part of
    /// `version` of `function_id`.
    pub fn owner(self, function_id: Uuid, version: i32) -> Uuid {
        let part = match self {
            Self::Source => "source",
            Self::Lockfile => "lockfile",
        };
        Uuid::new_v5(&function_id, format!("{part}/{version}").as_bytes())
    }
}

impl FromStr for SecretsKey {
    type Err = SecretsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| SecretsError::BadKey)?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(text))
                .map_err(|_| SecretsError::BadKey)?
        };
        if bytes.len() != 32 {
            return Err(SecretsError::BadKey);
        }
        Ok(Self(*Key::from_slice(&bytes)))
    }
}

impl fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretsKey(redacted)")
    }
}

/// A credential from the operator's configuration (such as the bootstrap
/// admin key): `Debug` never shows it, so logging a config cannot leak it,
/// and its memory is zeroed when it is dropped. Read it with
/// [`secrecy::ExposeSecret::expose_secret`], in the one place that needs it.
pub type Secret = secrecy::SecretString;

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretsKey {
        SecretsKey::generate().parse().unwrap()
    }

    #[test]
    fn what_is_sealed_opens_with_the_same_key_and_environment_only() {
        let (key, id) = (key(), Uuid::new_v4());
        let variables = Variables::from([("TOKEN".to_owned(), "s3cret value".to_owned())]);
        let stored = key.seal(id, &variables);
        assert!(!String::from_utf8_lossy(&stored).contains("s3cret"));
        assert_eq!(key.open(id, &stored).unwrap(), variables);
        assert!(
            key.open(Uuid::new_v4(), &stored).is_err(),
            "bound to its environment"
        );
        assert!(self::key().open(id, &stored).is_err(), "bound to its key");
        let mut altered = stored.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(key.open(id, &altered).is_err(), "tampering is detected");
    }

    #[test]
    fn a_configured_secret_never_shows_in_debug() {
        let secret = Secret::from("plat_a-key-an-operator-configured");
        assert!(!format!("{secret:?}").contains("operator"), "{secret:?}");
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&secret),
            "plat_a-key-an-operator-configured"
        );
    }

    #[test]
    fn keys_parse_from_base64_or_hex_of_32_bytes_only() {
        assert!("00".repeat(32).parse::<SecretsKey>().is_ok());
        assert!(SecretsKey::generate().parse::<SecretsKey>().is_ok());
        assert!("too short".parse::<SecretsKey>().is_err());
        assert!("00".repeat(16).parse::<SecretsKey>().is_err());
        assert_eq!(
            format!(
                "{:?}",
                SecretsKey::generate().parse::<SecretsKey>().unwrap()
            ),
            "SecretsKey(redacted)"
        );
    }
}
