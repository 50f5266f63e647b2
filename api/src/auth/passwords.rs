//! Passwords: argon2id with the crate's defaults (19 MiB, 2 passes, the
//! OWASP minimum), hashed and checked on the blocking pool because each
//! takes tens of milliseconds of CPU.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::error::{Error, Result};

pub const MIN_CHARS: usize = 12;
const MAX_BYTES: usize = 1024;

/// Refuses passwords too short to resist guessing, or absurdly long.
pub fn check(password: &str) -> Result<()> {
    if password.chars().count() < MIN_CHARS || password.len() > MAX_BYTES {
        return Err(Error::BadRequest(format!(
            "`password` must be at least {MIN_CHARS} characters (and at most {MAX_BYTES} bytes)"
        )));
    }
    Ok(())
}

/// The argon2id hash of `password`, in the PHC string format.
pub async fn hash(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
    })
    .await
    .map_err(anyhow::Error::from)?
    .map_err(Error::from)
}

/// Whether `password` matches `stored`. With no stored hash (an unknown
/// email, a user without a password) a dummy hash is checked anyway, so the
/// answer takes as long and does not tell which emails exist.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    tokio::task::spawn_blocking(move || {
        let dummy = DUMMY.get_or_init(|| {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(b"not a password anyone has", &salt)
                .expect("hashing a constant")
                .to_string()
        });
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| dummy.clone());
        let matches = PasswordHash::new(&stored).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        });
        known && matches
    })
    .await
    .map_err(|e| Error::from(anyhow::Error::from(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only_and_does_not_contain_it() {
        let hash = hash("correct horse battery".to_owned()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("correct horse"));
        assert!(
            verify("correct horse battery".to_owned(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(!verify("wrong horse battery".to_owned(), Some(hash))
            .await
            .unwrap());
        assert!(!verify("anything".to_owned(), None).await.unwrap());
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(check("short").is_err());
        assert!(check("twelve chars").is_ok());
    }
}
