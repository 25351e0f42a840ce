//! Who the client is: the socket peer (already replaced by a PROXY protocol header where the
//! listener expects one), or, when that peer is a trusted proxy, the right-most address in
//! X-Forwarded-For that is not itself a trusted proxy.

use std::net::{IpAddr, SocketAddr};

use super::ip::{canonical, CidrSet};

/// The resolved client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// Client IP every rule and the log use.
    pub ip: IpAddr,
    /// Client source port; unknown when the address came from X-Forwarded-For.
    pub port: Option<u16>,
    /// The socket peer is a trusted proxy (its X-Request-Id is kept).
    pub via_trusted_proxy: bool,
}

/// Resolves the client of a request from its peer and X-Forwarded-For header.
pub fn resolve(peer: SocketAddr, forwarded_for: Option<&[u8]>, trusted: &CidrSet) -> Client {
    let peer_ip = canonical(peer.ip());
    let direct = Client {
        ip: peer_ip,
        port: Some(peer.port()),
        via_trusted_proxy: false,
    };
    if trusted.is_empty() || !trusted.contains(peer_ip) {
        return direct;
    }
    let via = Client {
        via_trusted_proxy: true,
        ..direct
    };
    let Some(list) = forwarded_for.and_then(|v| std::str::from_utf8(v).ok()) else {
        return via;
    };
    let mut leftmost = None;
    for entry in list.rsplit(',') {
        let Some(ip) = parse_entry(entry.trim()) else {
            // A malformed hop: stop believing the chain here.
            break;
        };
        leftmost = Some(ip);
        if !trusted.contains(ip) {
            return Client {
                ip,
                port: None,
                via_trusted_proxy: true,
            };
        }
    }
    leftmost.map_or(via, |ip| Client {
        ip,
        port: None,
        via_trusted_proxy: true,
    })
}

fn parse_entry(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    s.parse::<SocketAddr>().ok().map(|a| canonical(a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let trusted = CidrSet::parse(&["10.0.0.0/8"]).expect("cidr");
        let xff = Some(&b"203.0.113.9, 10.1.1.1"[..]);
        let from_lb = resolve(addr("10.0.0.2:5000"), xff, &trusted);
        assert_eq!(from_lb.ip, "203.0.113.9".parse::<IpAddr>().expect("ip"));
        assert_eq!(from_lb.port, None);
        let direct = resolve(addr("198.51.100.4:6000"), xff, &trusted);
        assert_eq!(direct.ip, "198.51.100.4".parse::<IpAddr>().expect("ip"));
        assert_eq!(direct.port, Some(6000));
        assert!(!direct.via_trusted_proxy);
    }

    #[test]
    fn spoofed_left_entries_do_not_win() {
        let trusted = CidrSet::parse(&["10.0.0.0/8"]).expect("cidr");
        let xff = Some(&b"1.1.1.1, 198.51.100.7"[..]);
        let c = resolve(addr("10.0.0.2:5000"), xff, &trusted);
        assert_eq!(c.ip, "198.51.100.7".parse::<IpAddr>().expect("ip"));
    }
}
