//! Images on the public web, fetched by URL for the detection API
//! (`POST /v1/verify` with `{"url": ...}`). Anyone may send a URL, so the
//! gateway must not become a way into the network it runs in (SSRF):
//! - `https` only, without user info; port any;
//! - the host must be public: an IP literal is checked as written, and a
//!   name is resolved by [`PublicOnly`], which drops private, loopback,
//!   link-local and other special-purpose addresses. The connection goes to
//!   exactly the addresses that were checked, so a DNS answer that changes
//!   between check and connect (rebinding) changes nothing;
//! - redirects are followed by hand, at most [`MAX_REDIRECTS`], and each
//!   hop is checked like the first (and resolved again);
//! - no proxy from the environment (a proxy would resolve names itself), no
//!   cookies, no credentials;
//! - bounded bytes (on `Content-Length` and while streaming) and one
//!   deadline for the whole fetch.
//!
//! The operator may exempt origins (`host` or `host:port`) from the public
//! address rule, e.g. an internal media server; an exempt origin may also
//! be reached over plain `http`. Tests exempt their loopback server.
//!
//! Nothing fetched is written anywhere; the bytes stay in memory.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use crate::{describe, parse_allowed, read_bounded, redirect_target, AllowedHost, Cut, Fetched};

/// Redirects followed at most.
pub const MAX_REDIRECTS: usize = 5;

#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Origins (`host` or `host:port`) exempt from the public-address rule;
    /// they may also use plain `http`.
    pub exempt_origins: Vec<String>,
    /// Deadline for one fetch: connecting, redirects and the whole body.
    pub timeout: Duration,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig { exempt_origins: Vec::new(), timeout: Duration::from_secs(20) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebError {
    #[error("invalid exempt origin {0:?}: expected HOST or HOST:PORT")]
    BadExemptEntry(String),
    #[error("the url cannot be used: {0}")]
    InvalidUrl(String),
    #[error("{host} is not a public address: private, loopback and link-local hosts are never fetched")]
    NotPublic { host: String },
    #[error("the image at the url is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the site answered HTTP {status}")]
    Refused { status: u16 },
    #[error("the site cannot be reached: {0}")]
    Unavailable(String),
}

impl WebError {
    pub fn code(&self) -> likeness_codes::ErrorCode {
        use likeness_codes::ErrorCode;
        match self {
            WebError::BadExemptEntry(_) | WebError::InvalidUrl(_) => ErrorCode::VerifyUrlInvalid,
            WebError::NotPublic { .. } => ErrorCode::VerifyUrlNotPublic,
            WebError::TooLarge { .. } => ErrorCode::ResolverImageTooLarge,
            WebError::Refused { .. } | WebError::Unavailable(_) => ErrorCode::VerifyUrlUnavailable,
        }
    }
}

/// A client for images on the public web, shared by all requests.
pub struct WebImages {
    client: reqwest::Client,
    exempt: Vec<AllowedHost>,
    timeout: Duration,
}

impl WebImages {
    pub fn new(config: WebConfig) -> Result<WebImages, WebError> {
        let exempt: Vec<AllowedHost> = config
            .exempt_origins
            .iter()
            .map(|e| parse_allowed(e).map_err(|_| WebError::BadExemptEntry(e.clone())))
            .collect::<Result<_, _>>()?;
        let resolver = PublicOnly { exempt_hosts: exempt.iter().map(|a| a.host.clone()).collect() };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(resolver))
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("likeness-verify/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WebError::Unavailable(format!("cannot build the HTTP client: {e}")))?;
        Ok(WebImages { client, exempt, timeout: config.timeout })
    }

    /// Fetches the image at `url`, at most `limit` bytes, within the deadline.
    pub async fn fetch(&self, url: &str, limit: usize) -> Result<Fetched, WebError> {
        let url = Url::parse(url.trim()).map_err(|e| WebError::InvalidUrl(e.to_string()))?;
        let work = async {
            let mut url = url;
            let mut hops = 0;
            let resp = loop {
                self.check(&url)?;
                let resp = self.client.get(url.clone()).send().await.map_err(|e| self.failed(&e))?;
                if !resp.status().is_redirection() {
                    break resp;
                }
                let next = redirect_target(&resp, &url).map_err(WebError::Unavailable)?;
                hops += 1;
                if hops > MAX_REDIRECTS {
                    return Err(WebError::Unavailable(format!("more than {MAX_REDIRECTS} redirects")));
                }
                url = next;
            };
            read(resp, limit).await
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(WebError::Unavailable(format!("no complete answer within {} s", self.timeout.as_secs_f32()))),
        }
    }

    fn is_exempt(&self, url: &Url) -> bool {
        self.exempt.iter().any(|a| a.matches(url))
    }

    /// The rules every hop must pass before a connection is opened; names
    /// are checked again by the resolver.
    fn check(&self, url: &Url) -> Result<(), WebError> {
        if !url.username().is_empty() || url.password().is_some() {
            return Err(WebError::InvalidUrl("a url with user info is not fetched".into()));
        }
        let exempt = self.is_exempt(url);
        match url.scheme() {
            "https" => {}
            "http" if exempt => {}
            other => return Err(WebError::InvalidUrl(format!("{other}:// is not fetched: use https"))),
        }
        let shown = url.host_str().unwrap_or("").to_string();
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => None,
            None => return Err(WebError::InvalidUrl("the url has no host".into())),
        };
        if let Some(ip) = literal {
            if !exempt && !is_public(ip) {
                return Err(WebError::NotPublic { host: shown });
            }
        }
        Ok(())
    }

    /// A failed request, with the resolver's refusal told apart.
    fn failed(&self, e: &reqwest::Error) -> WebError {
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            if let Some(refused) = s.downcast_ref::<NotPublicName>() {
                return WebError::NotPublic { host: refused.0.clone() };
            }
            source = s.source();
        }
        WebError::Unavailable(describe(e))
    }
}

/// The body of a successful answer, within `limit` bytes.
async fn read(resp: reqwest::Response, limit: usize) -> Result<Fetched, WebError> {
    let status = resp.status().as_u16();
    if !(200..=299).contains(&status) {
        return Err(WebError::Refused { status });
    }
    match read_bounded(resp, limit).await {
        Ok((content_type, bytes)) => Ok(Fetched { bytes, content_type }),
        Err(Cut::TooLarge) => Err(WebError::TooLarge { limit }),
        Err(Cut::Broken(m)) => Err(WebError::Unavailable(m)),
    }
}

/// Resolves names with the system resolver, then keeps only public
/// addresses (all of them for an exempt host). No address left: refused.
struct PublicOnly {
    exempt_hosts: Vec<String>,
}

#[derive(Debug)]
struct NotPublicName(String);

impl std::fmt::Display for NotPublicName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} resolves to no public address", self.0)
    }
}

impl std::error::Error for NotPublicName {}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        let exempt = self.exempt_hosts.contains(&host);
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept = keep_public(found, exempt);
            if kept.is_empty() {
                return Err(Box::new(NotPublicName(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

fn keep_public(found: Vec<SocketAddr>, exempt: bool) -> Vec<SocketAddr> {
    found.into_iter().filter(|a| exempt || is_public(a.ip())).collect()
}

/// Whether an address is on the public internet: not private, loopback,
/// link-local, shared (CGNAT), multicast, documentation, benchmarking or
/// reserved, and not one of those wrapped in IPv6 (mapped, NAT64, 6to4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = a == 0                                   // "this network"
        || a == 10                                         // private
        || (a == 100 && (64..128).contains(&b))            // shared address space (CGNAT)
        || a == 127                                        // loopback
        || (a == 169 && b == 254)                          // link-local (cloud metadata)
        || (a == 172 && (16..32).contains(&b))             // private
        || (a == 192 && b == 0 && c == 0)                  // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)                  // documentation
        || (a == 192 && b == 88 && c == 99)                // 6to4 relay anycast
        || (a == 192 && b == 168)                          // private
        || (a == 198 && (18..20).contains(&b))             // benchmarking
        || (a == 198 && b == 51 && c == 100)               // documentation
        || (a == 203 && b == 0 && c == 113)                // documentation
        || a >= 224; // multicast, reserved, broadcast
    !special
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // NAT64 (64:ff9b::/96, and the local-use 64:ff9b:1::/48) carries an IPv4
    // address in its last 32 bits; 6to4 (2002::/16) in bits 16..48.
    if s[0] == 0x64 && s[1] == 0xff9b {
        if s[2] == 1 {
            return false;
        }
        return is_public_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
    }
    if s[0] == 0x2002 {
        return is_public_v4(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8));
    }
    let special = s[..6] == [0; 6]                          // ::, ::1, IPv4-compatible
        || (s[0] == 0x100 && s[1..4] == [0; 3])            // discard-only
        || (s[0] == 0x2001 && s[1] < 0x200)                // IETF protocol assignments, Teredo
        || (s[0] == 0x2001 && s[1] == 0xdb8)               // documentation
        || (s[0] & 0xfe00) == 0xfc00                        // unique local
        || (s[0] & 0xffc0) == 0xfe80                        // link-local
        || (s[0] & 0xffc0) == 0xfec0                        // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00; // multicast
    !special
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "2001:db8::1",
            "2001::1",
            "100::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private} taken for public");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.0.1",
            "172.32.0.1",
            "192.169.0.1",
            "223.255.255.254",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public} taken for private");
        }
    }

    #[test]
    fn urls_are_checked_before_any_connection() {
        let web = WebImages::new(WebConfig { exempt_origins: vec!["127.0.0.1:8443".into()], ..WebConfig::default() })
            .unwrap();
        let check = |u: &str| web.check(&Url::parse(u).unwrap());
        assert!(check("https://example.com/a.jpg").is_ok());
        assert!(check("https://93.184.215.14:8443/a.jpg").is_ok());
        assert!(check("http://127.0.0.1:8443/a.jpg").is_ok(), "an exempt origin, http allowed");
        assert!(matches!(check("http://example.com/a.jpg"), Err(WebError::InvalidUrl(_))));
        assert!(matches!(check("ftp://example.com/a.jpg"), Err(WebError::InvalidUrl(_))));
        assert!(matches!(check("file:///etc/passwd"), Err(WebError::InvalidUrl(_))));
        assert!(matches!(check("https://user:pw@example.com/a.jpg"), Err(WebError::InvalidUrl(_))));
        for private in [
            "https://127.0.0.1/a.jpg",
            "https://127.0.0.1:8444/a.jpg",
            "https://[::1]/a.jpg",
            "https://169.254.169.254/latest/meta-data/",
            "https://10.0.0.1/",
            "https://[::ffff:7f00:1]/",
            "https://0x7f.1/",
            "https://2130706433/",
        ] {
            assert!(matches!(check(private), Err(WebError::NotPublic { .. })), "{private}");
        }
    }

    #[test]
    fn resolved_names_keep_only_public_addresses() {
        let addrs: Vec<SocketAddr> =
            ["127.0.0.1:0", "93.184.215.14:0", "[fe80::1]:0"].iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(keep_public(addrs.clone(), false), vec![addrs[1]]);
        assert_eq!(keep_public(addrs.clone(), true), addrs);
    }
}
