//! Passwords: argon2id with the crate's defaults (19 MiB, 2 passes, the
//! OWASP minimum), hashed and checked on the blocking pool because each
//! takes tens of milliseconds of CPU, and only as many at once as
//! [`Hasher`] has permits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

pub const MIN_CHARS: usize = 12;
pub const MAX_BYTES: usize = 1024;

/// Refuses passwords too short to resist guessing, or absurdly long.
pub fn check(password: &str) -> Result<()> {
    if password.chars().count() < MIN_CHARS || password.len() > MAX_BYTES {
        return Err(Error::BadRequest(format!(
            "`password` must be at least {MIN_CHARS} characters (and at most {MAX_BYTES} bytes)"
        )));
    }
    Ok(())
}

/// Computes argon2id hashes on the blocking pool, at most `permits` at once.
/// Each hash holds 19 MiB for tens of milliseconds of CPU: unbounded, 500
/// concurrent logins would take 9.5 GiB and every core; bounded, the rest
/// wait their turn in a queue that costs a few bytes each. There are never
/// more useful hashes in flight than cores, so the default is one per core.
pub struct Hasher {
    permits: Arc<Semaphore>,
    running: Arc<AtomicUsize>,
    /// The most hashes ever seen running at once (for tests).
    peak: Arc<AtomicUsize>,
}

impl Hasher {
    /// A hasher running `concurrency` hashes at once; 0: one per CPU core.
    pub fn new(concurrency: usize) -> Self {
        let permits = match concurrency {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            n => n,
        };
        ::metrics::gauge!("plat_password_hash_slots").set(permits as f64);
        Self {
            permits: Arc::new(Semaphore::new(permits)),
            running: Arc::default(),
            peak: Arc::default(),
        }
    }

    /// The argon2id hash of `password`, in the PHC string format.
    pub async fn hash(&self, password: String) -> Result<String> {
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
        })
        .await?
        .map_err(Error::from)
    }

    /// Whether `password` matches `stored`. With no stored hash (an unknown
    /// email, a user without a password) a dummy hash is checked anyway, so
    /// the answer takes as long and does not tell which emails exist.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool> {
        static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        self.run(move || {
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
    }

    /// Runs `work` on the blocking pool once a permit is free. The permit
    /// moves into the blocking task: if the request is dropped meanwhile,
    /// the hash still holds its memory until it ends, and so its permit.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(anyhow::Error::from)?;
        let (running, peak) = (self.running.clone(), self.peak.clone());
        tokio::task::spawn_blocking(move || {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            ::metrics::gauge!("plat_password_hashes_running").increment(1.0);
            let result = work();
            ::metrics::gauge!("plat_password_hashes_running").decrement(1.0);
            running.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
            result
        })
        .await
        .map_err(|e| Error::from(anyhow::Error::from(e)))
    }

    /// The most hashes that ever ran at once.
    #[cfg(test)]
    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only_and_does_not_contain_it() {
        let hasher = Hasher::new(1);
        let hash = hasher
            .hash("correct horse battery".to_owned())
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("correct horse"));
        assert!(hasher
            .verify("correct horse battery".to_owned(), Some(hash.clone()))
            .await
            .unwrap());
        assert!(!hasher
            .verify("wrong horse battery".to_owned(), Some(hash))
            .await
            .unwrap());
        assert!(!hasher.verify("anything".to_owned(), None).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_hashes_run_at_once_than_the_hasher_has_permits_and_all_finish() {
        let hasher = Arc::new(Hasher::new(2));
        let stored = hasher
            .hash("correct horse battery".to_owned())
            .await
            .unwrap();

        let checks: Vec<_> = (0..12)
            .map(|i| {
                let (hasher, stored) = (hasher.clone(), stored.clone());
                tokio::spawn(async move {
                    let password = if i % 2 == 0 {
                        "correct horse battery"
                    } else {
                        "wrong"
                    };
                    hasher
                        .verify(password.to_owned(), Some(stored))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut matched = 0;
        for check in checks {
            matched += usize::from(check.await.unwrap());
        }

        assert_eq!(matched, 6, "every check finished with its own answer");
        assert!(hasher.peak() <= 2, "{} hashes ran at once", hasher.peak());
        assert!(hasher.peak() >= 1);
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(check("short").is_err());
        assert!(check("twelve chars").is_ok());
    }
}
