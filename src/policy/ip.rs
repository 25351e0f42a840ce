//! CIDR sets compiled into per-prefix-length hash tables.
//!
//! A lookup masks the address once per distinct prefix length present (at most 33 for IPv4, 129
//! for IPv6) and does one hash lookup each: the cost depends on how many prefix lengths the list
//! uses, not on how many entries it has.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

/// A set of IPv4 and IPv6 networks.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CidrSet {
    v4: Vec<(u8, HashSet<u32>)>,
    v6: Vec<(u8, HashSet<u128>)>,
}

/// Maps an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) to IPv4, so lists written in IPv4 apply.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn mask4(bits: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        bits & (u32::MAX << (32 - u32::from(len)))
    }
}

fn mask6(bits: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        bits & (u128::MAX << (128 - u32::from(len)))
    }
}

impl CidrSet {
    /// Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address. Errors name the bad entry.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut set = CidrSet::default();
        for entry in entries {
            let entry = entry.as_ref().trim();
            let net: IpNet = match entry.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match entry.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(format!(
                            "{entry:?} is not an IP address or CIDR (e.g. \"203.0.113.0/24\")"
                        ))
                    }
                },
            };
            set.insert(net);
        }
        Ok(set)
    }

    fn insert(&mut self, net: IpNet) {
        match net {
            IpNet::V4(n) => {
                let len = n.prefix_len();
                let bits = mask4(u32::from(n.addr()), len);
                match self.v4.iter_mut().find(|(l, _)| *l == len) {
                    Some((_, set)) => {
                        set.insert(bits);
                    }
                    None => self.v4.push((len, HashSet::from([bits]))),
                }
            }
            IpNet::V6(n) => {
                let len = n.prefix_len();
                let bits = mask6(u128::from(n.addr()), len);
                match self.v6.iter_mut().find(|(l, _)| *l == len) {
                    Some((_, set)) => {
                        set.insert(bits);
                    }
                    None => self.v6.push((len, HashSet::from([bits]))),
                }
            }
        }
    }

    /// Whether `ip` is in some network of the set.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                self.v4
                    .iter()
                    .any(|(len, set)| set.contains(&mask4(bits, *len)))
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                self.v6
                    .iter()
                    .any(|(len, set)| set.contains(&mask6(bits, *len)))
            }
        }
    }

    /// Whether the set has no network.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

/// An allow list and a deny list: deny wins; a non-empty allow list admits only its networks.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IpLists {
    /// Admitted networks (all when empty).
    pub allow: CidrSet,
    /// Refused networks.
    pub deny: CidrSet,
}

impl IpLists {
    /// `Some(rule id)` when `ip` is refused.
    pub fn refuses(&self, ip: IpAddr) -> Option<&'static str> {
        if self.deny.contains(ip) {
            Some("ip_deny")
        } else if !self.allow.is_empty() && !self.allow.contains(ip) {
            Some("ip_not_allowed")
        } else {
            None
        }
    }

    /// Whether both lists are empty.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn matches_v4_v6_and_mapped() {
        let set = CidrSet::parse(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "0.0.0.0/0"][..3])
            .expect("parse");
        assert!(set.contains(ip("10.200.1.1")));
        assert!(!set.contains(ip("11.0.0.1")));
        assert!(set.contains(ip("::ffff:10.1.2.3")));
        assert!(set.contains(ip("2001:db8:1::5")));
        assert!(!set.contains(ip("2001:db9::1")));
        let exact = CidrSet::parse(&["192.0.2.7"]).expect("parse");
        assert!(exact.contains(ip("192.0.2.7")) && !exact.contains(ip("192.0.2.8")));
        let all = CidrSet::parse(&["0.0.0.0/0"]).expect("parse");
        assert!(all.contains(ip("8.8.8.8")));
    }

    #[test]
    fn bad_entries_are_named() {
        let err = CidrSet::parse(&["10.0.0.0/33"]).expect_err("bad");
        assert!(
            err.contains("\"10.0.0.0/33\" is not an IP address or CIDR"),
            "{err}"
        );
    }

    #[test]
    fn deny_wins_and_allow_restricts() {
        let lists = IpLists {
            allow: CidrSet::parse(&["10.0.0.0/8"]).expect("allow"),
            deny: CidrSet::parse(&["10.9.0.0/16"]).expect("deny"),
        };
        assert_eq!(lists.refuses(ip("10.1.1.1")), None);
        assert_eq!(lists.refuses(ip("10.9.1.1")), Some("ip_deny"));
        assert_eq!(lists.refuses(ip("8.8.8.8")), Some("ip_not_allowed"));
    }
}
