//! The client's side of the HTTP/1 loop: which requests it takes, what it reads of them, and the
//! request it writes for the backend.

use http::Method;

use super::response::push_field;
use super::{ConnFacts, MAX_HEADERS};
use crate::proxy::conn::ClientConn;
use crate::proxy::ctx::Ctx;
use crate::proxy::phases::{forwarded_for, list_items, Located, ReqView};
use crate::route::router::ProxyAction;
use crate::route::Action;

/// A request header field, by what the loop does with it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Host,
    ContentLength,
    TransferEncoding,
    Expect,
    Upgrade,
    Connection,
    /// Keep-Alive, Proxy-Connection, TE, Proxy-Authorization, Proxy-Authenticate,
    /// HTTP2-Settings: hop-by-hop, not forwarded.
    HopByHop,
    XForwardedFor,
    /// X-Forwarded-Host, X-Forwarded-Proto, X-Real-IP: replaced by menshen's.
    Replaced,
    XRequestId,
    UserAgent,
    Other,
}

pub(super) fn field(name: &str) -> Field {
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    match name.len() {
        2 if is("te") => Field::HopByHop,
        4 if is("host") => Field::Host,
        6 if is("expect") => Field::Expect,
        7 if is("upgrade") => Field::Upgrade,
        9 if is("x-real-ip") => Field::Replaced,
        10 if is("connection") => Field::Connection,
        10 if is("keep-alive") => Field::HopByHop,
        10 if is("user-agent") => Field::UserAgent,
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
        _ => Field::Other,
    }
}

/// A parsed request this loop can serve.
pub(super) struct Req<'b> {
    pub(super) method: Method,
    pub(super) method_str: &'b str,
    pub(super) target: &'b str,
    pub(super) path: &'b str,
    pub(super) query: Option<&'b str>,
    pub(super) host: &'b str,
    pub(super) forwarded_for: Option<&'b [u8]>,
    pub(super) request_id: Option<&'b [u8]>,
    pub(super) user_agent: Option<&'b str>,
    /// The client asked to close after this request.
    pub(super) close: bool,
    pub(super) header_bytes: usize,
}

/// A request the loop serves, as its parts see it.
pub(super) struct Request<'r, 's> {
    pub(super) req: &'r Req<'r>,
    pub(super) view: &'r ReqView<'r>,
    pub(super) at: &'r Located<'r, 's>,
    pub(super) parsed: &'r httparse::Request<'r, 'r>,
    pub(super) fields: &'r [Field; MAX_HEADERS],
    /// The server is shutting down: the response closes the connection.
    pub(super) draining: bool,
}

impl<'b> Req<'b> {
    pub(super) fn view(&self, tls: bool) -> ReqView<'_> {
        ReqView {
            host: Some(self.host),
            method: &self.method,
            path: self.path,
            path_and_query: self.target,
            header_bytes: self.header_bytes,
            content_length: None,
            tls,
        }
    }
}

/// Whether every byte of an origin-form target is one pingora's URI parser takes as it is.
fn plain_target(target: &str) -> bool {
    target.starts_with('/')
        && target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b))
}

/// The tokens of a Connection header, if it names nothing but `close` and `keep-alive`:
/// `Some(true)` when it asks to close.
fn connection_close(value: &[u8]) -> Option<bool> {
    let mut close = false;
    for token in list_items(value) {
        if token.eq_ignore_ascii_case(b"close") {
            close = true;
        } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
            return None;
        }
    }
    Some(close)
}

/// Reads what the loop needs of a parsed request; `None` if it is not one the loop takes.
pub(super) fn request<'b>(
    parsed: &httparse::Request<'_, 'b>,
    fields: &mut [Field; MAX_HEADERS],
) -> Option<Req<'b>> {
    if parsed.version != Some(1) {
        return None;
    }
    let method_str = parsed.method?;
    let target = parsed.path?;
    if !plain_target(target) {
        return None;
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let method = Method::from_bytes(method_str.as_bytes()).ok()?;
    if method == Method::CONNECT {
        return None;
    }
    let mut req = Req {
        method,
        method_str,
        target,
        path,
        query,
        host: "",
        forwarded_for: None,
        request_id: None,
        user_agent: None,
        close: false,
        header_bytes: 0,
    };
    let mut hosts = 0;
    for (h, slot) in parsed.headers.iter().zip(fields.iter_mut()) {
        req.header_bytes += h.name.len() + h.value.len() + 4;
        let f = field(h.name);
        *slot = f;
        match f {
            Field::Host => {
                hosts += 1;
                req.host = std::str::from_utf8(h.value).ok()?;
            }
            Field::ContentLength if h.value.trim_ascii() != b"0" => return None,
            Field::TransferEncoding | Field::Expect | Field::Upgrade => return None,
            Field::Connection => req.close |= connection_close(h.value)?,
            Field::XForwardedFor if req.forwarded_for.is_none() => {
                req.forwarded_for = Some(h.value)
            }
            Field::XRequestId if req.request_id.is_none() => req.request_id = Some(h.value),
            Field::UserAgent if req.user_agent.is_none() => {
                req.user_agent = std::str::from_utf8(h.value).ok()
            }
            _ => {}
        }
    }
    (hosts == 1 && !req.host.is_empty()).then_some(req)
}

/// Whether the loop takes this located request: its route proxies to a plain-HTTP/1 upstream
/// and the connection is within the per-IP limit. The upstream it goes to, if so.
pub(super) fn takes<'s>(at: &Located<'_, 's>, conn: &ClientConn) -> Option<&'s ProxyAction> {
    if conn.over_limit() {
        return None;
    }
    match &at.route?.1.action {
        Action::Proxy(p) if !p.upstream.is_tls() => Some(p),
        _ => None,
    }
}

/// Writes the request for the backend into `out`: the client's header less hop-by-hop and
/// forwarding fields, the path rewritten, the Host overridden, then menshen's forwarding fields.
pub(super) fn upstream_request(
    out: &mut Vec<u8>,
    request: &Request<'_, '_>,
    action: &ProxyAction,
    ctx: &Ctx,
    facts: &ConnFacts,
) {
    let req = request.req;
    out.clear();
    out.extend_from_slice(req.method_str.as_bytes());
    out.push(b' ');
    match action.rewrite.apply(ctx.route_prefix(), req.target) {
        Some(path) => out.extend_from_slice(path.as_bytes()),
        None => out.extend_from_slice(req.target.as_bytes()),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (h, f) in request.parsed.headers.iter().zip(request.fields) {
        match f {
            Field::Host if action.host_header.is_some() => continue,
            Field::Connection
            | Field::HopByHop
            | Field::XForwardedFor
            | Field::Replaced
            | Field::XRequestId => continue,
            _ => push_field(out, h.name.as_bytes(), h.value),
        }
    }
    if let Some(host) = &action.host_header {
        push_field(out, b"host", host.as_bytes());
    }
    push_field(out, b"x-forwarded-host", req.host.as_bytes());
    if let Some(client_ip) = &ctx.client_ip {
        let list = forwarded_for(req.forwarded_for, facts.peer.addr.ip(), client_ip);
        push_field(out, b"x-forwarded-for", list.as_bytes());
        push_field(out, b"x-real-ip", client_ip.as_bytes());
    }
    let proto: &[u8] = if facts.tls.is_some() {
        b"https"
    } else {
        b"http"
    };
    push_field(out, b"x-forwarded-proto", proto);
    push_field(out, b"x-request-id", ctx.request_id.as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_tokens_other_than_close_and_keepalive_are_not_taken() {
        assert_eq!(connection_close(b"close"), Some(true));
        assert_eq!(connection_close(b"Keep-Alive"), Some(false));
        assert_eq!(connection_close(b"keep-alive, close"), Some(true));
        assert_eq!(connection_close(b"x-secret"), None);
    }

    #[test]
    fn only_plain_origin_form_targets_are_taken() {
        assert!(plain_target("/a/b?c=d&e=%20"));
        assert!(!plain_target("http://host/"));
        assert!(!plain_target("*"));
        assert!(!plain_target("/a b"));
        assert!(!plain_target("/a\"b"));
    }
}
