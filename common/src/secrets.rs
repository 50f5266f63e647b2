//! Values at rest (environments' variables, webhook signing secrets,
//! function sources and lockfiles): encrypted with the operator's key
//! (`PLAT_SECRETS_KEY`) by the API and opened only by the processes that
//! need them in clear.
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per write (random nonces
//! are safe at that size), and the owning row's id as associated data, so
//! a ciphertext copied onto another row fails to decrypt.
//!
//! Stored forms:
//! - format 1 (older rows): `[1][nonce: 24 bytes][ciphertext and tag]`;
//! - format 2 (written today): `[2][key id: 4 bytes][nonce][ciphertext and
//!   tag]`, where the key id names the key that sealed it (a hash of the
//!   key, which reveals nothing of it). Opening then tries only that key,
//!   and the API's re-sealer finds the rows of an older key in SQL
//!   (`api/src/sealing.rs`).
//!
//! Rotation: the new key becomes `PLAT_SECRETS_KEY` and the old ones
//! `PLAT_SECRETS_PREVIOUS_KEYS`. Sealing always uses the current key;
//! opening accepts any of them (docs/security.md, "Key rotation").

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// The format of rows sealed before keys had ids.
const FORMAT_V1: u8 = 1;
/// The format written today: with the sealing key's id.
pub const FORMAT_V2: u8 = 2;
const NONCE_BYTES: usize = 24;
/// Bytes of a key id.
pub const KEY_ID_BYTES: usize = 4;

/// Environment variables: name → value.
pub type Variables = BTreeMap<String, String>;

/// The keys values at rest are encrypted with: the current one, which seals
/// (`PLAT_SECRETS_KEY`), and the previous ones, which only open what they
/// sealed until it is re-sealed (`PLAT_SECRETS_PREVIOUS_KEYS`). Each is 32
/// bytes, given as base64 (44 characters) or hex (64). Parsing gives a
/// key without previous ones; [`SecretsKey::with_previous`] adds them.
/// `Debug` never shows a key.
#[derive(Clone)]
pub struct SecretsKey {
    current: OneKey,
    previous: Vec<OneKey>,
}

/// One key and its id.
#[derive(Clone)]
struct OneKey {
    key: Key,
    id: [u8; KEY_ID_BYTES],
}

impl OneKey {
    fn new(key: Key) -> Self {
        // A hash with a label of its own: the id can be stored and compared
        // without revealing anything about the key.
        let digest = Sha256::new()
            .chain_update(b"plat secrets key id\0")
            .chain_update(key.as_slice())
            .finalize();
        let mut id = [0; KEY_ID_BYTES];
        id.copy_from_slice(&digest[..KEY_ID_BYTES]);
        Self { key, id }
    }

    fn open(&self, owner: Uuid, nonce: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
        XChaCha20Poly1305::new(&self.key)
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: owner.as_bytes(),
                },
            )
            .ok()
    }
}

/// Why a key or a stored value could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The configured key is not 32 bytes of base64 or hex.
    #[error("the secrets key must be 32 bytes, written as base64 (44 characters) or hex (64 characters)")]
    BadKey,
    /// The stored value was written with another key, or was altered.
    #[error("the stored value cannot be decrypted with the configured secrets keys (was PLAT_SECRETS_KEY changed without keeping the old one in PLAT_SECRETS_PREVIOUS_KEYS?)")]
    Undecryptable,
}

impl SecretsKey {
    /// A new random key, as base64: what `plat up` generates for itself.
    pub fn generate() -> String {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        base64::engine::general_purpose::STANDARD.encode(key)
    }

    /// This key, which keeps sealing, able to open what `previous` sealed
    /// too (each with its own previous keys).
    pub fn with_previous(mut self, previous: &PreviousSecretsKeys) -> Self {
        for key in &previous.0 {
            for one in std::iter::once(&key.current).chain(&key.previous) {
                if one.id != self.current.id && self.previous.iter().all(|p| p.id != one.id) {
                    self.previous.push(one.clone());
                }
            }
        }
        self
    }

    /// Whether previous keys are configured (a rotation is under way).
    pub fn has_previous(&self) -> bool {
        !self.previous.is_empty()
    }

    /// The id of the current key, as stored after the format byte.
    pub fn current_id(&self) -> [u8; KEY_ID_BYTES] {
        self.current.id
    }

    /// Whether `stored` is sealed with the current key (and in the current
    /// format), judged from its header alone.
    pub fn is_current(&self, stored: &[u8]) -> bool {
        stored.first() == Some(&FORMAT_V2)
            && stored.get(1..1 + KEY_ID_BYTES) == Some(&self.current.id[..])
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

    /// Encrypts `plaintext` for the row `owner` (an environment, the
    /// function whose webhook signing secret it is, or a part of a version,
    /// [`VersionPart::owner`]) with the current key.
    pub fn seal_bytes(&self, owner: Uuid, plaintext: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = XChaCha20Poly1305::new(&self.current.key)
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: owner.as_bytes(),
                },
            )
            .expect("encryption into a Vec cannot fail");
        let mut stored = Vec::with_capacity(1 + KEY_ID_BYTES + NONCE_BYTES + ciphertext.len());
        stored.push(FORMAT_V2);
        stored.extend_from_slice(&self.current.id);
        stored.extend_from_slice(&nonce);
        stored.extend_from_slice(&ciphertext);
        stored
    }

    /// Decrypts what [`SecretsKey::seal_bytes`] stored for `owner`, with
    /// whichever configured key sealed it.
    pub fn open_bytes(&self, owner: Uuid, stored: &[u8]) -> Result<Vec<u8>, SecretsError> {
        let mut keys = std::iter::once(&self.current).chain(&self.previous);
        let opened = match stored.split_first() {
            Some((&FORMAT_V1, rest)) if rest.len() >= NONCE_BYTES => {
                // No key id: try each key, the current one first.
                let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
                keys.find_map(|key| key.open(owner, nonce, ciphertext))
            }
            Some((&FORMAT_V2, rest)) if rest.len() >= KEY_ID_BYTES + NONCE_BYTES => {
                let (id, rest) = rest.split_at(KEY_ID_BYTES);
                let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
                keys.filter(|key| key.id[..] == *id)
                    .find_map(|key| key.open(owner, nonce, ciphertext))
            }
            _ => None,
        };
        opened.ok_or(SecretsError::Undecryptable)
    }

    /// Opens `stored` with whichever key sealed it and seals it again with
    /// the current key: what the re-sealer writes during a rotation.
    pub fn reseal_bytes(&self, owner: Uuid, stored: &[u8]) -> Result<Vec<u8>, SecretsError> {
        Ok(self.seal_bytes(owner, &self.open_bytes(owner, stored)?))
    }
}

/// The keys of `PLAT_SECRETS_PREVIOUS_KEYS`: comma-separated, each written
/// as [`SecretsKey`] is; empty when no rotation is under way. `Debug` never
/// shows a key.
#[derive(Clone, Debug, Default)]
pub struct PreviousSecretsKeys(pub Vec<SecretsKey>);

impl PreviousSecretsKeys {
    /// Whether no previous key is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for PreviousSecretsKeys {
    type Err = SecretsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.split(',')
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(Self)
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
        Ok(Self {
            current: OneKey::new(*Key::from_slice(&bytes)),
            previous: Vec::new(),
        })
    }
}

impl fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The count of previous keys helps an operator check a rotation's
        // configuration; the keys themselves never show.
        if self.previous.is_empty() {
            f.write_str("SecretsKey(redacted)")
        } else {
            write!(f, "SecretsKey(redacted, {} previous)", self.previous.len())
        }
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

    fn previous(keys: &[&SecretsKey]) -> PreviousSecretsKeys {
        PreviousSecretsKeys(keys.iter().map(|key| (*key).clone()).collect())
    }

    #[test]
    fn after_a_rotation_old_values_open_and_new_ones_seal_with_the_current_key() {
        let (old, new, id) = (key(), key(), Uuid::new_v4());
        let sealed_by_old = old.seal_bytes(id, b"before the rotation");
        let rotated = new.clone().with_previous(&previous(&[&old]));

        assert_eq!(
            rotated.open_bytes(id, &sealed_by_old).unwrap(),
            b"before the rotation"
        );
        assert!(
            new.open_bytes(id, &sealed_by_old).is_err(),
            "the old key is needed"
        );
        assert!(!rotated.is_current(&sealed_by_old));

        let sealed_now = rotated.seal_bytes(id, b"after");
        assert!(rotated.is_current(&sealed_now));
        assert_eq!(
            new.open_bytes(id, &sealed_now).unwrap(),
            b"after",
            "sealed with the new key"
        );
        assert!(
            old.open_bytes(id, &sealed_now).is_err(),
            "not with the old one"
        );

        let resealed = rotated.reseal_bytes(id, &sealed_by_old).unwrap();
        assert!(rotated.is_current(&resealed));
        assert_eq!(
            new.open_bytes(id, &resealed).unwrap(),
            b"before the rotation"
        );
        assert!(
            rotated.open_bytes(Uuid::new_v4(), &resealed).is_err(),
            "still bound to its owner"
        );
    }

    #[test]
    fn format_1_values_keep_opening_with_the_current_or_a_previous_key() {
        let (old, new, id) = (key(), key(), Uuid::new_v4());
        // What seal_bytes wrote before key ids: [1][nonce][ciphertext].
        let sealed = old.seal_bytes(id, b"older row");
        let format_1 = [&[FORMAT_V1][..], &sealed[1 + KEY_ID_BYTES..]].concat();

        assert_eq!(old.open_bytes(id, &format_1).unwrap(), b"older row");
        let rotated = new.with_previous(&previous(&[&old]));
        assert_eq!(rotated.open_bytes(id, &format_1).unwrap(), b"older row");
        assert!(!rotated.is_current(&format_1), "re-sealed by a rotation");
    }

    #[test]
    fn previous_keys_parse_comma_separated_and_stay_out_of_debug() {
        let (a, b) = (SecretsKey::generate(), "00".repeat(32));
        let keys: PreviousSecretsKeys = format!(" {a}, {b} ,").parse().unwrap();
        assert_eq!(keys.0.len(), 2);
        assert!("".parse::<PreviousSecretsKeys>().unwrap().is_empty());
        assert!(format!("{a},not a key")
            .parse::<PreviousSecretsKeys>()
            .is_err());
        let debug = format!("{:?}", key().with_previous(&keys));
        assert_eq!(debug, "SecretsKey(redacted, 2 previous)");
        assert!(!format!("{keys:?}").contains(&a[..8]), "{keys:?}");
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
