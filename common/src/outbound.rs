//! Requests Plat sends to addresses users chose (completion webhooks), and
//! what keeps them off the operator's own network: every process that sends
//! builds its client here.
//!
//! - A destination must be `http` or `https`, without credentials in the URL.
//! - By default only public addresses are reached: loopback, private,
//!   link-local, unspecified, multicast and other special-purpose addresses
//!   are refused. The check is made on the addresses a name resolves to, and
//!   the connection goes to those checked addresses (our own resolver hands
//!   reqwest only them), so a name that resolves to a public address when
//!   checked and to a private one when connecting (DNS rebinding) gets
//!   nowhere. An IP-literal URL never reaches a resolver: [`OutboundPolicy::check_url`]
//!   checks it directly.
//! - The operator's allowlist (`PLAT_OUTBOUND_ALLOW`: comma-separated hosts,
//!   `host:port` or CIDRs) lets chosen destinations through anyway.
//! - Redirects are never followed: a 3xx is the answer.
//!
//! The same rules as the "SSRF" advice of OWASP and what GitHub's and
//! Stripe's webhook senders do (docs/security.md, "Outbound requests").

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// Why a destination is refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    /// Not a URL at all.
    #[error("{0:?} is not an absolute URL")]
    NotAUrl(String),
    /// Another scheme than http or https.
    #[error("the URL's scheme must be http or https, not {0:?}")]
    Scheme(String),
    /// `user:password@` in the URL.
    #[error("the URL must not carry credentials (user:password@)")]
    Credentials,
    /// No host to send to.
    #[error("the URL has no host")]
    NoHost,
    /// An address that is not public, and not allowlisted.
    #[error("{0} is not a public address, and PLAT_OUTBOUND_ALLOW does not allow it")]
    NotPublic(IpAddr),
    /// A name whose addresses are none of them public or allowlisted.
    #[error(
        "{0} resolves to {1}, not a public address, and PLAT_OUTBOUND_ALLOW does not allow it"
    )]
    NameNotPublic(String, IpAddr),
}

/// One entry of `PLAT_OUTBOUND_ALLOW`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    /// A host name (lowercase) or IP literal, any port.
    Host(String),
    /// A host name or IP literal on one port.
    HostPort(String, u16),
    /// Any address in the block, any port.
    Net(IpNet),
}

/// The destinations a process may send to (see the module's docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    allowed: Vec<Allowed>,
}

/// An entry of `PLAT_OUTBOUND_ALLOW` that is not a host, `host:port` or CIDR.
#[derive(Debug, thiserror::Error)]
#[error("PLAT_OUTBOUND_ALLOW: {0:?} is not a host, host:port or CIDR block")]
pub struct BadAllowEntry(String);

impl FromStr for OutboundPolicy {
    type Err = BadAllowEntry;

    /// `PLAT_OUTBOUND_ALLOW`'s value: comma-separated entries, blanks ignored.
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        let allowed = list
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(parse_entry)
            .collect::<Result<_, _>>()?;
        Ok(Self { allowed })
    }
}

fn parse_entry(entry: &str) -> Result<Allowed, BadAllowEntry> {
    let bad = || BadAllowEntry(entry.to_owned());
    if entry.contains('/') {
        return entry.parse().map(Allowed::Net).map_err(|_| bad());
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Ok(Allowed::Host(ip.to_string()));
    }
    if let Ok(addr) = entry.parse::<SocketAddr>() {
        return Ok(Allowed::HostPort(addr.ip().to_string(), addr.port()));
    }
    let (host, port) = match entry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port.parse::<u16>().map_err(|_| bad())?)),
        None => (entry, None),
    };
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !valid {
        return Err(bad());
    }
    let host = host.to_ascii_lowercase();
    Ok(match port {
        Some(port) => Allowed::HostPort(host, port),
        None => Allowed::Host(host),
    })
}

impl OutboundPolicy {
    /// Whether the allowlist names `host` (a name or an IP literal, as the
    /// URL writes it) for `port`.
    fn names(&self, host: &str, port: u16) -> bool {
        self.allowed.iter().any(|entry| match entry {
            Allowed::Host(h) => h.eq_ignore_ascii_case(host),
            Allowed::HostPort(h, p) => *p == port && h.eq_ignore_ascii_case(host),
            Allowed::Net(_) => false,
        })
    }

    /// Whether the allowlist names `host` for some port: its addresses are
    /// then not checked (the URL's port was, by [`Self::check_url`]).
    fn names_any_port(&self, host: &str) -> bool {
        self.allowed.iter().any(|entry| match entry {
            Allowed::Host(h) | Allowed::HostPort(h, _) => h.eq_ignore_ascii_case(host),
            Allowed::Net(_) => false,
        })
    }

    /// Whether `ip` may be reached: public, or in an allowed block.
    pub fn allows_address(&self, ip: IpAddr) -> bool {
        is_public(ip)
            || self.allowed.iter().any(|entry| match entry {
                Allowed::Net(net) => net.contains(&ip) || net.contains(&canonical(ip)),
                _ => false,
            })
    }

    /// Checks `url` as far as it can be without resolving it: its scheme,
    /// that it has no credentials, and an IP-literal host (and the name's
    /// allowlisted port, if the allowlist names it only with one). Answers
    /// the parsed URL.
    pub fn check_url(&self, url: &str) -> Result<Url, Refused> {
        let parsed = Url::parse(url).map_err(|_| Refused::NotAUrl(url.to_owned()))?;
        check_shape(&parsed)?;
        let port = parsed.port_or_known_default().unwrap_or_default();
        let host = parsed.host_str().ok_or(Refused::NoHost)?;
        // A name is checked on resolution, by the client's resolver.
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse() {
            self.check_literal(ip, port)?;
        }
        Ok(parsed)
    }

    fn check_literal(&self, ip: IpAddr, port: u16) -> Result<(), Refused> {
        if self.names(&ip.to_string(), port) || self.allows_address(ip) {
            Ok(())
        } else {
            Err(Refused::NotPublic(ip))
        }
    }

    /// A client for destinations users chose: requests time out after
    /// `timeout`, no redirect is followed, names resolve through the
    /// checking resolver. Send only URLs [`Self::check_url`] accepted.
    pub fn client(self: &Arc<Self>, timeout: Duration) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(CheckingResolver {
                policy: self.clone(),
            }))
            .user_agent(concat!("Plat-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with rustls and our own resolver builds")
    }
}

/// `http`/`https`, no credentials: what the API checks when a URL is set.
pub fn check_shape(url: &Url) -> Result<(), Refused> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refused::Scheme(url.scheme().to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused::Credentials);
    }
    if url.host().is_none() {
        return Err(Refused::NoHost);
    }
    Ok(())
}

/// Resolves with the system's resolver, then hands reqwest only the
/// addresses the policy allows (all of them for a name the allowlist names).
struct CheckingResolver {
    policy: Arc<OutboundPolicy>,
}

impl Resolve for CheckingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let trusted = policy.names_any_port(&host);
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|addr| trusted || policy.allows_address(addr.ip()))
                .collect();
            if let (true, Some(first)) = (allowed.is_empty(), found.first()) {
                return Err(Box::new(Refused::NameNotPublic(host, first.ip())) as _);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is an ordinary address on the internet: not loopback,
/// private, link-local, unspecified, multicast, broadcast, shared (CGNAT),
/// documentation or otherwise reserved.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        // 100.64.0.0/10, shared address space (carrier-grade NAT).
        || (a == 100 && (64..128).contains(&b))
        // 192.0.0.0/24, IETF protocol assignments.
        || (a == 192 && b == 0 && c == 0)
        // 198.18.0.0/15, benchmarking.
        || (a == 198 && (b == 18 || b == 19))
        // 240.0.0.0/4, reserved.
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // fc00::/7, unique local.
        || (first & 0xfe00) == 0xfc00
        // fe80::/10, link-local.
        || (first & 0xffc0) == 0xfe80
        // 2001:db8::/32, documentation.
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        // 64:ff9b:1::/48 local-use NAT64, and ::/96 IPv4-compatible.
        || (first == 0x0064 && ip.segments()[1] == 0xff9b && ip.segments()[2] == 1)
        || ip.segments()[..6].iter().all(|s| *s == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(list: &str) -> OutboundPolicy {
        list.parse().expect("a valid allowlist")
    }

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "ff02::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} should not be public");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip} should be public");
        }
    }

    #[test]
    fn an_ip_literal_url_is_refused_unless_allowlisted() {
        let url = "http://127.0.0.1:8080/hook";
        assert_eq!(
            policy("").check_url(url).unwrap_err(),
            Refused::NotPublic("127.0.0.1".parse().unwrap())
        );
        assert!(policy("127.0.0.1").check_url(url).is_ok());
        assert!(policy("127.0.0.1:8080").check_url(url).is_ok());
        assert!(policy("127.0.0.1:9090").check_url(url).is_err());
        assert!(policy("127.0.0.0/8").check_url(url).is_ok());
        assert!(policy("10.0.0.0/8").check_url(url).is_err());
    }

    #[test]
    fn only_http_urls_without_credentials_are_accepted() {
        let open = policy("");
        assert!(matches!(
            open.check_url("ftp://example.com/"),
            Err(Refused::Scheme(_))
        ));
        assert_eq!(
            open.check_url("https://user:pw@example.com/").unwrap_err(),
            Refused::Credentials
        );
        assert!(matches!(
            open.check_url("example.com"),
            Err(Refused::NotAUrl(_))
        ));
        assert!(open.check_url("https://example.com/hooks?x=1").is_ok());
    }

    #[test]
    fn allowlist_entries_are_hosts_host_ports_or_blocks() {
        assert_eq!(
            policy(" hooks.internal , localhost:8080,10.0.0.0/8,[::1]:9000").allowed,
            vec![
                Allowed::Host("hooks.internal".into()),
                Allowed::HostPort("localhost".into(), 8080),
                Allowed::Net("10.0.0.0/8".parse().unwrap()),
                Allowed::HostPort("::1".into(), 9000),
            ]
        );
        assert!("bad host!".parse::<OutboundPolicy>().is_err());
        assert!("host:notaport".parse::<OutboundPolicy>().is_err());
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_unless_allowlisted() {
        let resolve = |list: &str| {
            let resolver = CheckingResolver {
                policy: Arc::new(policy(list)),
            };
            resolver.resolve(Name::from_str("localhost").unwrap())
        };
        assert!(resolve("").await.is_err());
        assert!(resolve("localhost:1234").await.is_ok());
        assert!(resolve("127.0.0.0/8,::1/128").await.is_ok());
    }
}
