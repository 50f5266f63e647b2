//! The client's address: the TCP peer, unless the peer is one of the
//! operator's trusted proxies (`PLAT_TRUSTED_PROXIES`), in which case it is
//! the right-most address of `X-Forwarded-For` that is not itself a trusted
//! proxy. Walking from the right, as nginx's `real_ip_recursive` and Rails'
//! `RemoteIp` do, matters: the left of the header is whatever the client
//! wrote, only the hops a trusted proxy appended can be believed.
//!
//! Rate limits key on [`rate_key`]: an IPv4 address as is, an IPv6 address
//! by its /64, the block one subscriber usually gets whole.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap};
use ipnet::IpNet;

use crate::AppState;

/// `PLAT_TRUSTED_PROXIES`: comma-separated addresses or CIDR blocks; empty
/// entries (and an empty value) are allowed and mean nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| {
                        format!("{entry:?} is not an IP address or a CIDR block like 10.0.0.0/8")
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// The client's address, for rate limits and the audit log. `None` only
/// when the server runs without connection info (never in `serve`).
pub fn client_ip(
    extensions: &Extensions,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
) -> Option<IpAddr> {
    let ConnectInfo(peer) = extensions.get::<ConnectInfo<SocketAddr>>()?;
    Some(resolve(peer.ip(), headers, trusted))
}

/// The client's address as a handler argument.
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(client_ip(
            &parts.extensions,
            &parts.headers,
            &state.config.trusted_proxies,
        )))
    }
}

fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.contains(ip);
    let mut client = peer.to_canonical();
    if !is_trusted(client) {
        return client;
    }
    // Several headers are one list, in order (RFC 9110 §5.3).
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            // Garbage from a trusted proxy's client: stop at the last
            // address we could believe.
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, possibly with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:443`), as some proxies write it.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|address| address.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The key rate limits use for `ip`: IPv4 as is, IPv6 by its /64 (one
/// subscriber commonly holds a whole /64, so counting single addresses
/// would let them rotate through 2^64 of them).
pub fn rate_key(ip: Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => IpNet::new(IpAddr::V6(v6), 64)
            .map_or_else(|_| v6.to_string(), |net| net.trunc().to_string()),
        None => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(list: &str) -> TrustedProxies {
        list.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let headers = forwarded(&["203.0.113.9"]);
        assert_eq!(
            resolve(ip("198.51.100.1"), &headers, &TrustedProxies::default()),
            ip("198.51.100.1")
        );
        let others = trusted("10.0.0.0/8");
        assert_eq!(
            resolve(ip("198.51.100.1"), &headers, &others),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_client_is_the_rightmost_untrusted_hop() {
        let proxies = trusted("10.0.0.0/8, 192.0.2.7");
        // The client claims to be 1.1.1.1; the first proxy saw 203.0.113.9;
        // the second (trusted) proxy appended the first.
        let headers = forwarded(&["1.1.1.1, 203.0.113.9", "192.0.2.7"]);
        assert_eq!(
            resolve(ip("10.1.2.3"), &headers, &proxies),
            ip("203.0.113.9")
        );
        let with_port = forwarded(&["[2001:db8::5]:443"]);
        assert_eq!(
            resolve(ip("10.1.2.3"), &with_port, &proxies),
            ip("2001:db8::5")
        );
        let garbage = forwarded(&["203.0.113.9, not-an-ip"]);
        assert_eq!(resolve(ip("10.1.2.3"), &garbage, &proxies), ip("10.1.2.3"));
        assert_eq!(
            resolve(ip("10.1.2.3"), &HeaderMap::new(), &proxies),
            ip("10.1.2.3")
        );
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64_and_ipv4_ones_alone() {
        assert_eq!(rate_key(Some(ip("203.0.113.9"))), "203.0.113.9");
        assert_eq!(
            rate_key(Some(ip("2001:db8:1:2:aaaa::1"))),
            rate_key(Some(ip("2001:db8:1:2:ffff::9")))
        );
        assert_eq!(
            rate_key(Some(ip("2001:db8:1:2:aaaa::1"))),
            "2001:db8:1:2::/64"
        );
        assert_ne!(
            rate_key(Some(ip("2001:db8:1:2::1"))),
            rate_key(Some(ip("2001:db8:1:3::1")))
        );
        assert_eq!(
            resolve(
                ip("::ffff:203.0.113.9"),
                &HeaderMap::new(),
                &TrustedProxies::default()
            ),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_proxies_are_addresses_or_blocks() {
        assert_eq!(trusted("10.0.0.0/8, 127.0.0.1,::1").0.len(), 3);
        assert_eq!(trusted(""), TrustedProxies::default(), "none, the default");
        assert!("10.0.0.0/8,localhost".parse::<TrustedProxies>().is_err());
    }
}
