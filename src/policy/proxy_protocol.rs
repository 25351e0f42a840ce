//! PROXY protocol v1 (text) and v2 (binary) headers, as sent by cloud L4 load balancers.
//!
//! [`parse`] looks at the bytes read so far and says whether the header is complete, and if so
//! which client address it carries and how many bytes it took. [`read_header`] reads one off a
//! new connection (`proxy::conn`, before the TLS handshake or the first request).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::{Error, ErrorType, Result};
use tokio::io::AsyncReadExt;

/// Longest PROXY header accepted (v2 with TLVs).
const MAX_PROXY_HEADER: usize = 4096;

const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// Longest v1 header, CRLF included.
const V1_MAX: usize = 107;

/// What the bytes so far hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// A header of `len` bytes; `source` is the client (`None` for LOCAL / UNKNOWN).
    Header {
        /// Client address, if the header carries one.
        source: Option<SocketAddr>,
        /// Bytes the header took.
        len: usize,
    },
    /// Not a PROXY header.
    Invalid(&'static str),
}

/// Parses a PROXY header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    if buf.len() >= 12 && buf[..12] == V2_SIGNATURE {
        return parse_v2(buf);
    }
    if V2_SIGNATURE.starts_with(buf) && !buf.is_empty() {
        return Parsed::Incomplete;
    }
    let prefix = b"PROXY ";
    if buf.len() < prefix.len() {
        return if prefix.starts_with(buf) {
            Parsed::Incomplete
        } else {
            Parsed::Invalid("no PROXY header")
        };
    }
    if !buf.starts_with(prefix) {
        return Parsed::Invalid("no PROXY header");
    }
    parse_v1(buf)
}

fn parse_v1(buf: &[u8]) -> Parsed {
    let Some(end) = buf.windows(2).take(V1_MAX).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Parsed::Invalid("PROXY v1 line too long")
        } else {
            Parsed::Incomplete
        };
    };
    let Ok(line) = std::str::from_utf8(&buf[..end]) else {
        return Parsed::Invalid("PROXY v1 line is not text");
    };
    let parts: Vec<&str> = line.split(' ').collect();
    let len = end + 2;
    match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Parsed::Header { source: None, len },
        ["PROXY", "TCP4" | "TCP6", src, _dst, sport, _dport] => {
            match (src.parse::<IpAddr>(), sport.parse::<u16>()) {
                (Ok(ip), Ok(port)) => Parsed::Header {
                    source: Some(SocketAddr::new(ip, port)),
                    len,
                },
                _ => Parsed::Invalid("PROXY v1 address or port malformed"),
            }
        }
        _ => Parsed::Invalid("PROXY v1 line malformed"),
    }
}

fn parse_v2(buf: &[u8]) -> Parsed {
    if buf.len() < 16 {
        return Parsed::Incomplete;
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Parsed::Invalid("PROXY v2 version is not 2");
    }
    let fam = buf[13];
    let addr_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + addr_len;
    if buf.len() < len {
        return Parsed::Incomplete;
    }
    let addrs = &buf[16..len];
    // LOCAL (health checks from the balancer itself): keep the socket's own address.
    if ver_cmd & 0x0F == 0 {
        return Parsed::Header { source: None, len };
    }
    let source = match fam >> 4 {
        1 if addrs.len() >= 12 => {
            let ip = Ipv4Addr::new(addrs[0], addrs[1], addrs[2], addrs[3]);
            Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([addrs[8], addrs[9]]),
            ))
        }
        2 if addrs.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&addrs[..16]);
            let port = u16::from_be_bytes([addrs[32], addrs[33]]);
            Some(SocketAddr::new(Ipv6Addr::from(octets).into(), port))
        }
        _ => None,
    };
    Parsed::Header { source, len }
}

/// Reads the PROXY header and makes its source the connection's peer address.
pub async fn read_header(stream: &mut L4Stream) -> Result<()> {
    use pingora::protocols::{GetSocketDigest, SocketDigest};
    use std::os::fd::AsRawFd;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| Error::because(ErrorType::ReadError, "reading PROXY header", e))?;
        if n == 0 {
            return Error::e_explain(ErrorType::ConnectionClosed, "closed before PROXY header");
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse(&buf) {
            Parsed::Incomplete if buf.len() < MAX_PROXY_HEADER => continue,
            Parsed::Incomplete => {
                return Error::e_explain(ErrorType::InvalidHTTPHeader, "PROXY header too long")
            }
            Parsed::Invalid(why) => {
                tracing::warn!("dropped connection without a valid PROXY header: {why}");
                return Error::e_explain(ErrorType::InvalidHTTPHeader, why);
            }
            Parsed::Header { source, len } => {
                if len < buf.len() {
                    stream.rewind(&buf[len..]);
                }
                if let Some(src) = source {
                    let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
                    let _ = digest
                        .peer_addr
                        .set(Some(pingora::protocols::l4::socket::SocketAddr::Inet(src)));
                    stream.set_socket_digest(digest);
                }
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_tcp4_and_partial_input() {
        let line = b"PROXY TCP4 203.0.113.7 10.0.0.1 40123 443\r\nGET";
        assert_eq!(parse(&line[..10]), Parsed::Incomplete);
        assert_eq!(
            parse(line),
            Parsed::Header {
                source: Some("203.0.113.7:40123".parse().expect("addr")),
                len: line.len() - 3
            }
        );
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n"), Parsed::Invalid(_)));
    }

    #[test]
    fn v2_inet_and_local() {
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[
            0x21, 0x11, 0, 12, 198, 51, 100, 9, 10, 0, 0, 1, 0x9c, 0x40, 0x01, 0xbb,
        ]);
        assert_eq!(parse(&v2[..14]), Parsed::Incomplete);
        assert_eq!(
            parse(&v2),
            Parsed::Header {
                source: Some("198.51.100.9:40000".parse().expect("addr")),
                len: 28
            }
        );
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(
            parse(&local),
            Parsed::Header {
                source: None,
                len: 16
            }
        );
    }
}
