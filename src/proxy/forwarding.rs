//! What a backend is told about the request's way to it, whatever the client's protocol or the
//! backend's: one definition, used by every engine.
//!
//! | field | sent |
//! |---|---|
//! | `X-Forwarded-For` | the client's list extended with the peer, or the client's address |
//! | `X-Real-IP` | the client's address (after PROXY protocol and trusted proxies) |
//! | `X-Forwarded-Host`, `X-Forwarded-Proto` | the canonical Host; `https` or `http` |
//! | `Forwarded` (RFC 7239) | the client's list extended with `for=PEER;host=HOST;proto=PROTO` |
//! | `Via` (RFC 9110 7.6.3) | the client's list extended with `1.1 menshen` (`2 menshen`, ...) |
//! | `X-Request-Id` | the request's id (the client's from a trusted proxy) |
//! | `traceparent` (W3C Trace Context) | the client's when well formed; else one whose trace id is the request id |
//!
//! The client's own values of these fields are never forwarded as they came: a list is
//! extended, anything else replaced. Like X-Forwarded-For, a `Forwarded` or `Via` list is kept
//! whether its sender is trusted or not; what menshen adds is what it saw.

use std::net::IpAddr;

use http::HeaderValue;

use super::conn::ConnFacts;
use super::ctx::Ctx;
use crate::semantics::fields::Field;

/// The name menshen gives itself in `Via`.
const PSEUDONYM: &str = "menshen";

/// What the client's request said of its way here, in the fields menshen extends or replaces
/// (the first of each, when sent more than once).
#[derive(Default, Clone, Copy)]
pub(in crate::proxy) struct Received<'a> {
    pub(in crate::proxy) forwarded_for: Option<&'a [u8]>,
    pub(in crate::proxy) forwarded: Option<&'a [u8]>,
    pub(in crate::proxy) via: Option<&'a [u8]>,
    pub(in crate::proxy) traceparent: Option<&'a [u8]>,
}

impl<'a> Received<'a> {
    /// Notes a field of the client's request; `f` is `name`'s class.
    pub(in crate::proxy) fn note(&mut self, f: Field, value: &'a [u8]) {
        let slot = match f {
            Field::XForwardedFor => &mut self.forwarded_for,
            Field::Forwarded => &mut self.forwarded,
            Field::Via => &mut self.via,
            Field::TraceParent => &mut self.traceparent,
            _ => return,
        };
        slot.get_or_insert(value);
    }

    /// The fields of an HTTP/2 request.
    pub(in crate::proxy) fn of(headers: &'a http::HeaderMap) -> Self {
        let get = |name: &str| headers.get(name).map(HeaderValue::as_bytes);
        Self {
            forwarded_for: get("x-forwarded-for"),
            forwarded: get("forwarded"),
            via: get("via"),
            traceparent: get("traceparent"),
        }
    }
}

/// The client's protocol, as `Via` names it.
#[derive(Clone, Copy)]
pub(in crate::proxy) enum Protocol {
    Http10,
    Http11,
    Http2,
}

impl Protocol {
    fn via(self) -> &'static str {
        match self {
            Protocol::Http10 => "1.0",
            Protocol::Http11 => "1.1",
            Protocol::Http2 => "2",
        }
    }
}

/// The request's place on the way: its canonical Host, the client's protocol and what the
/// client said.
pub(in crate::proxy) struct Hop<'a> {
    pub(in crate::proxy) host: &'a str,
    pub(in crate::proxy) protocol: Protocol,
    pub(in crate::proxy) received: Received<'a>,
}

/// menshen's forwarding fields for the backend (the table above), each handed to `emit`.
pub(in crate::proxy) fn forwarding_fields(
    hop: &Hop<'_>,
    ctx: &Ctx,
    facts: &ConnFacts,
    mut emit: impl FnMut(&'static str, &[u8]),
) {
    let received = &hop.received;
    let proto: &str = if facts.tls.is_some() { "https" } else { "http" };
    emit("x-forwarded-host", hop.host.as_bytes());
    if let Some(client_ip) = &ctx.client_ip {
        let list = forwarded_for(received.forwarded_for, facts.peer.addr.ip(), client_ip);
        emit("x-forwarded-for", list.as_bytes());
        emit("x-real-ip", client_ip.as_bytes());
    }
    emit("x-forwarded-proto", proto.as_bytes());
    let mut value = Vec::with_capacity(96);
    extend(&mut value, received.forwarded);
    forwarded_element(&mut value, facts.peer.addr.ip(), hop.host, proto);
    emit("forwarded", &value);
    value.clear();
    extend(&mut value, received.via);
    value.extend_from_slice(hop.protocol.via().as_bytes());
    value.push(b' ');
    value.extend_from_slice(PSEUDONYM.as_bytes());
    emit("via", &value);
    emit("x-request-id", ctx.request_id.as_bytes());
    match received.traceparent.filter(|t| is_traceparent(t)) {
        Some(traceparent) => emit("traceparent", traceparent),
        None => {
            if let Some(traceparent) = traceparent_of(ctx.request_id.as_bytes()) {
                emit("traceparent", &traceparent);
            }
        }
    }
}

/// The X-Forwarded-For sent upstream: the client's address, or, when the request already
/// carried a list (believed or not), that list with the socket peer added.
pub(super) fn forwarded_for(
    prev: Option<&[u8]>,
    peer: IpAddr,
    client_ip: &HeaderValue,
) -> HeaderValue {
    match prev {
        Some(prev) => {
            let list = format!("{}, {peer}", String::from_utf8_lossy(prev));
            HeaderValue::from_str(&list).unwrap_or_else(|_| client_ip.clone())
        }
        None => client_ip.clone(),
    }
}

/// Starts `out` with the client's list and a separator, when it sent one.
fn extend(out: &mut Vec<u8>, prev: Option<&[u8]>) {
    if let Some(prev) = prev.map(<[u8]>::trim_ascii).filter(|p| !p.is_empty()) {
        out.extend_from_slice(prev);
        out.extend_from_slice(b", ");
    }
}

/// Appends one `Forwarded` element (RFC 7239 4): `for` the peer (an IPv6 address bracketed and
/// quoted), `host` and `proto`, quoted where they are not tokens.
fn forwarded_element(out: &mut Vec<u8>, peer: IpAddr, host: &str, proto: &str) {
    use std::io::Write as _;
    let _ = match peer {
        IpAddr::V4(v4) => write!(out, "for={v4}"),
        IpAddr::V6(v6) => write!(out, "for=\"[{v6}]\""),
    };
    out.extend_from_slice(b";host=");
    if host.bytes().all(is_tchar) {
        out.extend_from_slice(host.as_bytes());
    } else {
        // The canonical Host is a name or an address and a port: no quote or backslash.
        out.push(b'"');
        out.extend_from_slice(host.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b";proto=");
    out.extend_from_slice(proto.as_bytes());
}

/// A token character (RFC 9110 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `value` is a `traceparent` of version 00 that may be passed on: lowercase hex
/// fields of 2, 32, 16 and 2 digits, trace id and parent id not all zeros.
fn is_traceparent(value: &[u8]) -> bool {
    let hex = |s: &[u8]| s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let zero = |s: &[u8]| s.iter().all(|&b| b == b'0');
    let parts: Vec<&[u8]> = value.split(|&b| b == b'-').collect();
    match parts.as_slice() {
        [version, trace, parent, flags] => {
            *version == b"00"
                && trace.len() == 32
                && parent.len() == 16
                && flags.len() == 2
                && hex(trace)
                && hex(parent)
                && hex(flags)
                && !zero(trace)
                && !zero(parent)
        }
        _ => false,
    }
}

/// A `traceparent` for a request that came without a valid one: the request id (32 hex digits)
/// as the trace id, so that the backend's traces and menshen's access log meet; its last 16
/// digits as the parent id; not sampled. None for a request id of another form (a trusted
/// proxy's).
fn traceparent_of(request_id: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(55);
    out.extend_from_slice(b"00-");
    out.extend_from_slice(request_id);
    out.push(b'-');
    out.extend_from_slice(request_id.get(16..)?);
    out.extend_from_slice(b"-00");
    is_traceparent(&out).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_elements_quote_what_is_not_a_token() {
        let mut out = Vec::new();
        forwarded_element(
            &mut out,
            "192.0.2.60".parse().expect("address"),
            "example.cn",
            "https",
        );
        assert_eq!(out, b"for=192.0.2.60;host=example.cn;proto=https");
        out.clear();
        forwarded_element(
            &mut out,
            "2001:db8::17".parse().expect("address"),
            "example.cn:8443",
            "http",
        );
        assert_eq!(
            out,
            b"for=\"[2001:db8::17]\";host=\"example.cn:8443\";proto=http"
        );
    }

    #[test]
    fn only_well_formed_traceparents_pass() {
        let good = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(is_traceparent(good));
        for bad in [
            &b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"[..],
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            b"",
        ] {
            assert!(!is_traceparent(bad), "{}", String::from_utf8_lossy(bad));
        }
        let made = traceparent_of(b"0123456789abcdef0000000000000001").expect("made");
        assert_eq!(
            made,
            b"00-0123456789abcdef0000000000000001-0000000000000001-00"
        );
        assert_eq!(traceparent_of(b"client-id-7"), None);
    }
}
