//! Who is calling, for per-address limits: the connection's peer, or, when
//! that peer is a configured reverse proxy, the address the proxies say
//! they forwarded for. IPv6 clients are counted per /64, the block one
//! subscriber gets, so one host cannot mint a fresh bucket per address.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;

/// An address block, `10.0.0.0/8` or `2001:db8::/32` (a bare address is /32
/// or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| format!("{s:?} is not an address or address/prefix"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix must be 0 to {max}"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(net)), 32, self.prefix)
                    == masked(u128::from(u32::from(ip)), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), 128, self.prefix) == masked(u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn masked(bits: u128, width: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        bits >> (width - prefix)
    }
}

/// An IPv4 address written as IPv6 (`::ffff:1.2.3.4`) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The bucket a client address counts in: itself for IPv4, its /64 for IPv6.
pub(crate) fn bucket(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// The client of `req`: its peer, unless the peer is a trusted proxy.
/// Without connection info (a router driven in-process), `0.0.0.0`.
pub(crate) fn address(req: &Request, trusted: &[Cidr]) -> IpAddr {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(addr)| addr.ip());
    forwarded_client(peer, req.headers(), trusted)
}

/// Walks the forwarding chain from the nearest hop: the first address that
/// is not a trusted proxy is the client. Only a trusted peer's headers are
/// read at all; an unparsable chain counts as the peer itself, never as an
/// address the client chose.
pub(crate) fn forwarded_client(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return canonical(peer);
    }
    let Some(chain) = chain(headers) else { return canonical(peer) };
    for hop in chain.iter().rev() {
        if !is_trusted(*hop) {
            return canonical(*hop);
        }
    }
    // Every hop is a proxy of ours: the farthest one is the client.
    chain.first().copied().map_or(canonical(peer), canonical)
}

/// The addresses of `Forwarded` (RFC 7239 `for=`), else `X-Forwarded-For`,
/// nearest hop last; `None` when absent or when any hop is not an address.
fn chain(headers: &HeaderMap) -> Option<Vec<IpAddr>> {
    let joined = |name: &str| -> Option<String> {
        let values: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
        (!values.is_empty()).then(|| values.join(","))
    };
    if let Some(forwarded) = joined("forwarded") {
        let mut hops = Vec::new();
        for element in forwarded.split(',') {
            let node = element
                .split(';')
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                .map(|(_, v)| v.trim().trim_matches('"'))?;
            hops.push(node_address(node)?);
        }
        return (!hops.is_empty()).then_some(hops);
    }
    let xff = joined("x-forwarded-for")?;
    xff.split(',').map(|hop| node_address(hop.trim())).collect::<Option<Vec<_>>>().filter(|h| !h.is_empty())
}

/// `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]`, `[2001:db8::1]:443`, `2001:db8::1`.
fn node_address(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    node.parse().ok().or_else(|| node.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn blocks_parse_and_contain() {
        for (block, ip, inside) in [
            ("10.0.0.0/8", "10.1.2.3", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "::ffff:127.0.0.1", true),
            ("2001:db8::/32", "2001:db8:1::5", true),
            ("2001:db8::/32", "2001:db9::5", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("10.0.0.0/8", "::1", false),
        ] {
            let c: Cidr = block.parse().unwrap();
            assert_eq!(c.contains(ip.parse().unwrap()), inside, "{block} {ip}");
        }
        for bad in ["10.0.0.0/33", "::/129", "example.com", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        let a = bucket("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = bucket("2001:db8:1:2:bbbb::2".parse().unwrap());
        let c = bucket("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(bucket("::ffff:1.2.3.4".parse().unwrap()), "1.2.3.4".parse::<IpAddr>().unwrap());
        assert_eq!(bucket("1.2.3.4".parse().unwrap()), "1.2.3.4".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let trusted = cidrs(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        // (peer, header, value, the client)
        for (peer, header, value, client) in [
            // Not a proxy of ours: its headers are the client's own words.
            ("203.0.113.9", "x-forwarded-for", "1.1.1.1", "203.0.113.9"),
            ("203.0.113.9", "forwarded", "for=1.1.1.1", "203.0.113.9"),
            // Our proxy: the nearest hop that is not ours.
            ("10.0.0.2", "x-forwarded-for", "198.51.100.7", "198.51.100.7"),
            ("10.0.0.2", "x-forwarded-for", "6.6.6.6, 198.51.100.7", "198.51.100.7"),
            ("10.0.0.2", "x-forwarded-for", "198.51.100.7, 10.0.0.3", "198.51.100.7"),
            ("10.0.0.2", "forwarded", "for=198.51.100.7;proto=https", "198.51.100.7"),
            ("10.0.0.2", "forwarded", "for=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17"),
            ("10.0.0.2", "forwarded", "for=6.6.6.6, for=198.51.100.7:80", "198.51.100.7"),
            ("2001:db8:ffff::1", "x-forwarded-for", "2001:db8:1::9", "2001:db8:1::9"),
            // Nothing usable: the proxy itself, never a made-up address.
            ("10.0.0.2", "x-forwarded-for", "", "10.0.0.2"),
            ("10.0.0.2", "x-forwarded-for", "not-an-ip", "10.0.0.2"),
            ("10.0.0.2", "forwarded", "for=unknown", "10.0.0.2"),
            ("10.0.0.2", "x-other", "1.1.1.1", "10.0.0.2"),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header, value.parse().unwrap());
            let got = forwarded_client(peer.parse().unwrap(), &headers, &trusted);
            assert_eq!(got, client.parse::<IpAddr>().unwrap(), "{peer} {header}: {value}");
        }
    }
}
