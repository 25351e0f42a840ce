//! What the client gets of a backend's response head, whatever the client's protocol or the
//! backend's: one definition, used by every engine.
//!
//! The backend's fields, less those of its connection (hop-by-hop, and what its `Connection`
//! names), its `X-Request-Id` (menshen sends the request's), its `Server` (menshen sends the
//! site's `server_header`, `menshen` unless set, as nginx sends its own) and its `Alt-Svc`
//! (which describes the backend's alternatives, not the edge's: a GCP load balancer's
//! `h3=":443"` would send browsers to try QUIC at menshen's address; the site's `alt_svc` is
//! sent instead). Then the site's edits: fields removed, fields set, HSTS on TLS.

use http::HeaderValue;

use super::ctx::Ctx;
use super::http1::Framing;
use crate::semantics::coding::{Coding, Decision};
use crate::semantics::fields::{field, is_hop_by_hop, Field};

/// What the site does to every response it sends: headers removed, headers set, HSTS on TLS,
/// `Server` and `Alt-Svc`; and, once the response head is seen, its compression.
#[derive(Clone, Copy)]
pub(in crate::proxy) struct ResponseEdits<'a> {
    pub(in crate::proxy) remove: &'a [http::HeaderName],
    pub(in crate::proxy) add: &'a [(http::HeaderName, HeaderValue)],
    pub(in crate::proxy) hsts: Option<&'a HeaderValue>,
    pub(in crate::proxy) server: Option<&'a HeaderValue>,
    pub(in crate::proxy) alt_svc: Option<&'a HeaderValue>,
    /// The coding menshen applies to the body (`Content-Encoding` sent, the backend's
    /// `Content-Length` and `Accept-Ranges` not, a strong `ETag` made weak).
    pub(in crate::proxy) coding: Option<Coding>,
    /// `Vary: Accept-Encoding` is added.
    pub(in crate::proxy) vary: bool,
    /// What the edge cache did (`Cache-Status`, `X-Cache`).
    pub(in crate::proxy) cache: Option<crate::cache::status::Outcome>,
}

/// `Server` on responses of a request no site took.
static SERVER: HeaderValue = HeaderValue::from_static("menshen");

impl<'a> ResponseEdits<'a> {
    pub(in crate::proxy) fn of(ctx: &'a Ctx, tls: bool) -> Self {
        let site = ctx.site.and_then(|i| ctx.snapshot.as_ref()?.site_policy(i));
        // A route's edits hold its site's.
        let route = ctx.header_edits();
        match site {
            Some(site) => Self {
                remove: route.map_or(&site.remove_headers, |r| &r.response_remove),
                add: route.map_or(&site.add_headers, |r| &r.response_set),
                hsts: site.hsts.as_ref().filter(|_| tls),
                server: site.server.as_ref(),
                alt_svc: site.alt_svc.as_ref(),
                coding: None,
                vary: false,
                cache: ctx.cache,
            },
            None => Self {
                remove: &[],
                add: &[],
                hsts: None,
                server: Some(&SERVER),
                alt_svc: None,
                coding: None,
                vary: false,
                cache: ctx.cache,
            },
        }
    }

    /// These edits with a response's compression `decision`.
    pub(in crate::proxy) fn compressed(self, decision: Option<Decision>) -> Self {
        let Some(d) = decision else { return self };
        Self {
            coding: d.outcome.ok(),
            vary: d.vary,
            ..self
        }
    }

    /// Whether the site sets or removes `name` itself, so that the backend's is not sent.
    fn replaces(&self, name: &str) -> bool {
        let is = |n: &http::HeaderName| name.eq_ignore_ascii_case(n.as_str());
        self.remove.iter().any(is)
            || self.add.iter().any(|(n, _)| is(n))
            || (self.hsts.is_some() && is(&http::header::STRICT_TRANSPORT_SECURITY))
            || name.eq_ignore_ascii_case("server")
            || name.eq_ignore_ascii_case("alt-svc")
    }
}

/// The fields of a backend's response that the client gets, whatever its protocol: the
/// backend's less hop-by-hop fields, its request id and a Content-Length that its framing
/// overrides (chunked, or until close), with the site's edits. Each goes to `emit`; `Date`
/// is said to be present or not.
pub(in crate::proxy) fn response_fields(
    resp: &httparse::Response<'_, '_>,
    framing: Framing,
    edits: &ResponseEdits<'_>,
    emit: impl FnMut(&str, &[u8]),
) -> bool {
    let fields = resp.headers.iter().map(|h| (h.name, h.value));
    edited_fields(fields, framing, edits, emit)
}

/// `response_fields` over any response's fields (an HTTP/2 backend's, too).
fn edited_fields<'a>(
    fields: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
    framing: Framing,
    edits: &ResponseEdits<'_>,
    mut emit: impl FnMut(&str, &[u8]),
) -> bool {
    let hop = HopByHop::of(fields.clone());
    let mut has_date = false;
    let mut varies = false;
    for (name, value) in fields {
        match field(name) {
            Field::XRequestId => continue,
            Field::ContentLength if matches!(framing, Framing::Chunked | Framing::UntilClose) => {
                continue
            }
            f if hop.drops(f, name) => continue,
            _ => {}
        }
        has_date |= name.eq_ignore_ascii_case("date");
        if edits.replaces(name) {
            continue;
        }
        // Only a Vary that is sent counts: one the site's edits remove or replace does not.
        varies |= edits.vary && name.eq_ignore_ascii_case("vary") && names_accept_encoding(value);
        match edits.coding {
            Some(_) => coded_field(name, value, &mut emit),
            None => emit(name, value),
        }
    }
    if let Some(coding) = edits.coding {
        emit("content-encoding", coding.token().as_bytes());
    }
    varies |= edits.add.iter().any(|(name, value)| {
        name.as_str().eq_ignore_ascii_case("vary") && names_accept_encoding(value.as_bytes())
    });
    if edits.vary && !varies {
        emit("vary", b"accept-encoding");
    }
    let sent = |name: &http::HeaderName| !edits.remove.contains(name);
    if let Some(server) = edits.server.filter(|_| sent(&http::header::SERVER)) {
        emit("server", server.as_bytes());
    }
    if let Some(alt_svc) = edits.alt_svc.filter(|_| sent(&http::header::ALT_SVC)) {
        emit("alt-svc", alt_svc.as_bytes());
    }
    for (name, value) in edits.add {
        emit(name.as_str(), value.as_bytes());
    }
    if let Some(hsts) = edits.hsts {
        emit("strict-transport-security", hsts.as_bytes());
    }
    if let Some(cache) = edits.cache {
        emit("cache-status", cache.cache_status());
        emit("x-cache", cache.x_cache());
    }
    has_date
}

/// `response_fields` over an HTTP/2 backend's fields.
pub(in crate::proxy) fn edited_map(
    headers: &http::HeaderMap,
    framing: Framing,
    edits: &ResponseEdits<'_>,
    emit: impl FnMut(&str, &[u8]),
) -> bool {
    let fields: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    edited_fields(fields.iter().copied(), framing, edits, emit)
}

/// A backend's field on a response menshen compresses: its `Content-Encoding` (identity, as
/// only those are compressed) and `Accept-Ranges` dropped, as ranges of the coded body are not
/// offered; a strong `ETag` made weak, as the bytes differ (RFC 9110 8.8.1).
fn coded_field(name: &str, value: &[u8], emit: &mut impl FnMut(&str, &[u8])) {
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    if is("content-encoding") || is("accept-ranges") {
        return;
    }
    if is("etag") && value.starts_with(b"\"") {
        emit(name, &[b"W/", value].concat());
        return;
    }
    emit(name, value);
}

/// Whether a `Vary` value names `Accept-Encoding` already (or `*`).
fn names_accept_encoding(value: &[u8]) -> bool {
    crate::semantics::fields::list_items(value)
        .any(|v| v == b"*" || v.eq_ignore_ascii_case(b"accept-encoding"))
}

/// The fields of a backend's response that belong to its connection, not the client's: the
/// hop-by-hop ones and those its `Connection` header names.
pub(in crate::proxy) struct HopByHop<'r> {
    connection: [&'r [u8]; 4],
    count: usize,
}

impl<'r> HopByHop<'r> {
    pub(in crate::proxy) fn of(fields: impl Iterator<Item = (&'r str, &'r [u8])>) -> Self {
        let mut hop = HopByHop {
            connection: [&[]; 4],
            count: 0,
        };
        for (name, value) in fields {
            if name.len() == 10 && name.eq_ignore_ascii_case("connection") {
                if let Some(slot) = hop.connection.get_mut(hop.count) {
                    *slot = value;
                    hop.count += 1;
                }
            }
        }
        hop
    }

    pub(in crate::proxy) fn of_response(resp: &httparse::Response<'_, 'r>) -> Self {
        Self::of(resp.headers.iter().map(|h| (h.name, h.value)))
    }

    pub(in crate::proxy) fn drops(&self, f: Field, name: &str) -> bool {
        is_hop_by_hop(f)
            || crate::semantics::fields::nominated(
                self.connection[..self.count].iter().copied(),
                name,
            )
    }
}
