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
//! | `X-Forwarded-Client-Cert` | `Hash=SHA256;Subject="DN"` of the client certificate verified for a site that checks them; never the client's |
//! | `traceparent` (W3C Trace Context) | a recorded trace's, naming the attempt's span; else the client's when well formed; else one whose trace id is the request id |
//!
//! The client's own values of these fields are never forwarded as they came: a list is
//! extended, anything else replaced. Like X-Forwarded-For, a `Forwarded` or `Via` list is kept
//! whether its sender is trusted or not; what menshen adds is what it saw.

use http::HeaderValue;

use super::conn::ConnFacts;
use super::ctx::Ctx;
use crate::policy::headers::Values;
use crate::semantics::fields::Field;
use crate::semantics::trace_context::{self, TraceParent};

/// The name menshen gives itself in `Via`.
const PSEUDONYM: &[u8] = b"menshen";

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
    fn via(self) -> &'static [u8] {
        match self {
            Protocol::Http10 => b"1.0",
            Protocol::Http11 => b"1.1",
            Protocol::Http2 => b"2",
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

/// menshen's fields for the backend, each handed to `emit` as its value's parts, in order
/// (nothing is allocated for them): the forwarding fields (the table above) less those the
/// route's header edits remove or set, then the edits' set and added fields.
pub(in crate::proxy) fn forwarding_fields(
    hop: &Hop<'_>,
    ctx: &Ctx,
    facts: &ConnFacts,
    mut emit: impl FnMut(&str, &[&[u8]]),
) {
    if let Some(fill) = &ctx.fill {
        // The edge cache revalidates its stale response.
        fill.conditions(|name, value| emit(name, &[value]));
    }
    let edits = ctx.header_edits();
    menshen_fields(hop, ctx, facts, |name, parts| {
        if !edits.is_some_and(|e| e.drops_request(name)) {
            emit(name, parts);
        }
    });
    let Some(edits) = edits else { return };
    let site = ctx
        .site
        .and_then(|i| ctx.snapshot.as_ref()?.router.site_at(i));
    let values = Values {
        client_ip: ctx
            .client_ip
            .as_ref()
            .map_or(&b""[..], HeaderValue::as_bytes),
        request_id: ctx.request_id.as_bytes(),
        site: site.map_or(&b""[..], |s| s.name.as_bytes()),
        host: hop.host.as_bytes(),
    };
    for (name, value) in edits.request_set.iter().chain(&edits.request_add) {
        value.render(&values, |parts| emit(name.as_str(), parts));
    }
}

/// Whether a field the client sent is left out for the route's header edits (removed, or set
/// by them).
pub(in crate::proxy) fn edited_out(ctx: &Ctx, name: &str) -> bool {
    ctx.header_edits().is_some_and(|e| e.drops_request(name))
}

fn menshen_fields(
    hop: &Hop<'_>,
    ctx: &Ctx,
    facts: &ConnFacts,
    mut emit: impl FnMut(&'static str, &[&[u8]]),
) {
    let received = &hop.received;
    let proto: &[u8] = if facts.tls.is_some() {
        b"https"
    } else {
        b"http"
    };
    let peer = facts
        .peer
        .ip_text
        .as_ref()
        .map_or(&b"unknown"[..], HeaderValue::as_bytes);
    emit("x-forwarded-host", &[hop.host.as_bytes()]);
    if let Some(client_ip) = &ctx.client_ip {
        match received.forwarded_for {
            Some(prev) => emit("x-forwarded-for", &[prev, b", ", peer]),
            None => emit("x-forwarded-for", &[client_ip.as_bytes()]),
        }
        emit("x-real-ip", &[client_ip.as_bytes()]);
    }
    emit("x-forwarded-proto", &[proto]);
    emit(
        "forwarded",
        &forwarded(received.forwarded, peer, hop.host, proto),
    );
    let (prev, comma) = listed(received.via);
    emit("via", &[prev, comma, hop.protocol.via(), b" ", PSEUDONYM]);
    let id = ctx.request_id.as_bytes();
    emit("x-request-id", &[id]);
    if let Some(cert) = ctx.client_cert.as_ref().and_then(|c| c.forwarded.as_ref()) {
        emit("x-forwarded-client-cert", &[cert.as_bytes()]);
    }
    if let Some(trace) = &ctx.trace {
        // A recorded trace: the backend's spans are children of this attempt's span.
        emit("traceparent", &[&trace.traceparent()]);
        return;
    }
    match received.traceparent.filter(|t| is_traceparent(t)) {
        Some(traceparent) => emit("traceparent", &[traceparent]),
        None => {
            if let Some(made) = traceparent_of(id) {
                emit("traceparent", &made);
            }
        }
    }
}

/// The `Forwarded` value, in parts: the client's list, then one element (RFC 7239 4): `for`
/// the peer (an IPv6 address bracketed and quoted), `host` and `proto`, quoted where they are
/// not tokens.
fn forwarded<'a>(
    prev: Option<&'a [u8]>,
    peer: &'a [u8],
    host: &'a str,
    proto: &'a [u8],
) -> [&'a [u8]; 9] {
    let (prev, comma) = listed(prev);
    let (open, close): (&[u8], &[u8]) = match peer.contains(&b':') {
        true => (b"for=\"[", b"]\""),
        false => (b"for=", b""),
    };
    let host = host.as_bytes();
    // The canonical Host is a name or an address and a port: no quote or backslash to escape.
    let (quote, end): (&[u8], &[u8]) = match host.iter().copied().all(is_tchar) {
        true => (b";host=", b";proto="),
        false => (b";host=\"", b"\";proto="),
    };
    [prev, comma, open, peer, close, quote, host, end, proto]
}

/// A `traceparent` for a request that came without a valid one, in parts: the request id as
/// the trace id, so that the backend's traces and the access log meet; its last 16 digits as the
/// parent id; not sampled. None for a request id of another form (a trusted proxy's).
fn traceparent_of(id: &[u8]) -> Option<[&[u8]; 5]> {
    is_trace_id(id).then(|| [&b"00-"[..], id, b"-", &id[16..], b"-00"])
}

/// The client's list and a separator, when it sent one.
fn listed(prev: Option<&[u8]>) -> (&[u8], &'static [u8]) {
    match prev.map(<[u8]>::trim_ascii).filter(|p| !p.is_empty()) {
        Some(prev) => (prev, b", "),
        None => (b"", b""),
    }
}

/// A token character (RFC 9110 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `value` is a `traceparent` that may be passed on (`TraceParent::parse`).
fn is_traceparent(value: &[u8]) -> bool {
    TraceParent::parse(value).is_some()
}

/// Whether a request id can be a trace id (its last 16 digits are then the parent id).
fn is_trace_id(id: &[u8]) -> bool {
    trace_context::trace_id_of(id).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(parts: &[&[u8]]) -> String {
        String::from_utf8(parts.concat()).expect("text")
    }

    #[test]
    fn forwarded_elements_extend_the_list_and_quote_what_is_not_a_token() {
        let v4 = forwarded(None, b"192.0.2.60", "example.cn", b"https");
        assert_eq!(joined(&v4), "for=192.0.2.60;host=example.cn;proto=https");
        let v6 = forwarded(
            Some(b" for=1.2.3.4 "),
            b"2001:db8::17",
            "example.cn:8443",
            b"http",
        );
        assert_eq!(
            joined(&v6),
            "for=1.2.3.4, for=\"[2001:db8::17]\";host=\"example.cn:8443\";proto=http"
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
            joined(&made),
            "00-0123456789abcdef0000000000000001-0000000000000001-00"
        );
        assert!(is_traceparent(joined(&made).as_bytes()));
        assert!(traceparent_of(b"client-id-7").is_none());
        assert!(traceparent_of(b"0123456789abcdef0000000000000000").is_none());
    }
}
