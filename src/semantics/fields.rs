//! Header fields by what a proxy does with them: one classification for requests and responses
//! on every protocol path, and one reading of the list and length syntax.
//!
//! Hop-by-hop fields (RFC 9110 7.6.1) belong to one connection and are never forwarded:
//! `Connection` and every field it names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Upgrade`
//! (except in an upgrade handshake, which the HTTP/1 engine carries itself), `HTTP2-Settings`,
//! `Proxy-Authenticate` and `Proxy-Authorization`. The framing fields (`Content-Length`,
//! `Transfer-Encoding`) are each engine's to rewrite, whatever `Connection` names.

/// A header field, by what a proxy does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `Host`.
    Host,
    /// `Content-Length`.
    ContentLength,
    /// `Transfer-Encoding`.
    TransferEncoding,
    /// `Expect`.
    Expect,
    /// `Upgrade`.
    Upgrade,
    /// `Connection`.
    Connection,
    /// `Keep-Alive`, `Proxy-Connection`, `TE`, `Proxy-Authorization`, `Proxy-Authenticate`,
    /// `HTTP2-Settings`: hop-by-hop, never forwarded.
    HopByHop,
    /// `X-Forwarded-For`: extended with the peer.
    XForwardedFor,
    /// `Forwarded`: extended with menshen's element.
    Forwarded,
    /// `Via`: extended with menshen's entry.
    Via,
    /// `traceparent`: passed on when well formed, else replaced.
    TraceParent,
    /// `X-Forwarded-Host`, `X-Forwarded-Proto`, `X-Real-IP`: replaced by menshen's.
    Replaced,
    /// `X-Request-Id`.
    XRequestId,
    /// `User-Agent`.
    UserAgent,
    /// Anything else: forwarded as it is.
    Other,
}

/// The class of a field name (any case).
pub fn field(name: &str) -> Field {
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    match name.len() {
        2 if is("te") => Field::HopByHop,
        3 if is("via") => Field::Via,
        4 if is("host") => Field::Host,
        6 if is("expect") => Field::Expect,
        7 if is("upgrade") => Field::Upgrade,
        9 if is("x-real-ip") => Field::Replaced,
        9 if is("forwarded") => Field::Forwarded,
        10 if is("connection") => Field::Connection,
        10 if is("keep-alive") => Field::HopByHop,
        10 if is("user-agent") => Field::UserAgent,
        11 if is("traceparent") => Field::TraceParent,
        12 if is("x-request-id") => Field::XRequestId,
        14 if is("content-length") => Field::ContentLength,
        14 if is("http2-settings") => Field::HopByHop,
        18 if is("proxy-authenticate") => Field::HopByHop,
        19 if is("proxy-authorization") => Field::HopByHop,
        15 if is("x-forwarded-for") => Field::XForwardedFor,
        16 if is("x-forwarded-host") => Field::Replaced,
        16 if is("proxy-connection") => Field::HopByHop,
        17 if is("transfer-encoding") => Field::TransferEncoding,
        17 if is("x-forwarded-proto") => Field::Replaced,
        // What menshen verified of a client certificate: a client never gets to say it.
        23 if is("x-forwarded-client-cert") => Field::Replaced,
        _ => Field::Other,
    }
}

/// Whether a field of this class is dropped between connections, before looking at what
/// `Connection` names.
pub fn is_hop_by_hop(f: Field) -> bool {
    matches!(f, Field::Connection | Field::HopByHop | Field::Upgrade)
}

/// The items of a comma-separated field value (Connection, Transfer-Encoding, a Content-Length
/// list), trimmed.
pub fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// Whether `Connection` values name the field `name` (framing fields are never dropped so).
pub fn nominated<'v>(connection: impl IntoIterator<Item = &'v [u8]>, name: &str) -> bool {
    let f = field(name);
    if matches!(f, Field::ContentLength | Field::TransferEncoding) {
        return false;
    }
    connection
        .into_iter()
        .any(|value| list_items(value).any(|t| t.eq_ignore_ascii_case(name.as_bytes())))
}

/// A Content-Length value: digits only, or a list of the same digits (RFC 9110 8.6); `None`
/// for anything else (a sign, spaces inside, differing values, more than 19 digits).
pub fn content_length(value: &[u8]) -> Option<u64> {
    let mut length = None;
    for digits in list_items(value) {
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
        if length.is_some_and(|l| l != n) {
            return None;
        }
        length = Some(n);
    }
    length
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_digits_and_agree() {
        assert_eq!(content_length(b" 42 "), Some(42));
        assert_eq!(content_length(b"2, 2"), Some(2), "a list of one length");
        assert_eq!(content_length(b"2, 3"), None);
        assert_eq!(content_length(b"+5"), None);
        assert_eq!(content_length(b"-1"), None);
        assert_eq!(content_length(b"0x5"), None);
        assert_eq!(content_length(b""), None);
        assert_eq!(content_length(b"99999999999999999999"), None);
    }

    #[test]
    fn connection_names_fields_but_never_the_framing() {
        let values: [&[u8]; 2] = [b"keep-alive, X-Secret", b"content-length"];
        assert!(nominated(values, "x-secret"));
        assert!(!nominated(values, "content-length"));
        assert!(!nominated(values, "x-other"));
        assert!(is_hop_by_hop(field("Proxy-Authorization")));
        assert!(is_hop_by_hop(field("UPGRADE")));
        assert!(!is_hop_by_hop(field("transfer-encoding")));
    }
}
