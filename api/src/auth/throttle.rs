//! Limits on the anonymous side of authentication, keyed by the client's
//! address (see `client_addr`: an IPv6 client by its /64) and, for logins,
//! by account: login and password-reset attempts, and requests with
//! credentials that turn out invalid. Like the per-user rate, they live in
//! this process's memory (docs/security.md).

use std::net::IpAddr;
use std::time::Duration;

use super::rate_limit::{Rate, RateLimiter};
use crate::client_addr;
use crate::error::Error;

pub struct Throttle {
    /// Login attempts per client address.
    login: RateLimiter<String>,
    /// Login attempts per account (its email, trimmed and lowercased).
    login_account: RateLimiter<String>,
    /// Invalid credentials per client address.
    invalid: RateLimiter<String>,
}

impl Throttle {
    pub fn new(config: &crate::ApiConfig) -> Self {
        Self {
            login: RateLimiter::new(per_minute(config.login_attempts_per_minute)),
            login_account: RateLimiter::new(per_minute(
                config.login_attempts_per_account_per_minute,
            )),
            invalid: RateLimiter::new(per_minute(config.invalid_credentials_per_minute)),
        }
    }

    /// Spends one login attempt of the client's address and, when one is
    /// named, of the account; refuses when either is used up. Called before
    /// any password is hashed. The account's limit holds across addresses,
    /// so a botnet gets no more guesses at one account than a single client.
    pub fn login_attempt(
        &self,
        client: Option<IpAddr>,
        account: Option<&str>,
    ) -> Result<(), Error> {
        let address = client_addr::rate_key(client);
        self.login.take(&address).map_err(|wait| {
            throttled(
                format!("too many login attempts from {address} (PLAT_LOGIN_ATTEMPTS_PER_MINUTE)"),
                wait,
            )
        })?;
        if let Some(account) = account {
            self.login_account
                .take(&account.trim().to_lowercase())
                .map_err(|wait| {
                    throttled(
                        "too many login attempts on this account (PLAT_LOGIN_ATTEMPTS_PER_ACCOUNT_PER_MINUTE)"
                            .to_owned(),
                        wait,
                    )
                })?;
        }
        Ok(())
    }

    /// The answer to an unknown, expired or revoked credential: 401 with
    /// `detail`, or 429 once the client's address has sent too many. Valid
    /// credentials are never counted, so they keep working from the same
    /// address (a shared NAT, a misconfigured neighbour).
    pub fn invalid_credential(&self, client: Option<IpAddr>, detail: &str) -> Error {
        let address = client_addr::rate_key(client);
        match self.invalid.take(&address) {
            Ok(()) => Error::Unauthorized(detail.to_owned()),
            Err(wait) => throttled(
                format!("too many requests with invalid credentials from {address} (PLAT_INVALID_CREDENTIALS_PER_MINUTE)"),
                wait,
            ),
        }
    }
}

fn throttled(limit: String, wait: Duration) -> Error {
    let retry_after_secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    Error::RateLimited {
        detail: format!("too many requests: {limit}; retry after {retry_after_secs} s"),
        retry_after_secs,
    }
}

/// A limit of `n` a minute, all of which may come at once.
fn per_minute(n: u32) -> Rate {
    Rate {
        per_sec: f64::from(n) / 60.0,
        burst: n,
    }
}
