//! The client's side of the HTTP/1 engine: what it reads of a request head (its framing, its
//! Connection tokens, its canonical target and Host), and the request it writes for the backend.

use http::Method;

use crate::proxy::conn::ConnFacts;
use crate::proxy::ctx::Ctx;
use crate::proxy::forwarding::{edited_out, forwarding_fields, Hop, Protocol, Received};
use crate::proxy::http1::{push_field, push_field_parts, MAX_HEADERS};
use crate::proxy::own::Asking;
use crate::proxy::phases::ReqView;
use crate::route::router::ProxyAction;
use crate::semantics::fields::{content_length, field, list_items, nominated, Field};
use crate::semantics::target::{canonical, Host, Target, TargetError};

/// How a request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request, its target and Host canonical.
pub(super) struct Req<'b> {
    pub(super) method: Method,
    pub(super) method_str: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(super) version: u8,
    /// The canonical target: what every phase sees and the backend gets.
    pub(super) target: Target<'b>,
    /// The canonical Host (an absolute-form target's authority wins).
    pub(super) host: Host<'b>,
    /// What the client said of the request's way here (`X-Forwarded-For`, `Forwarded`, ...).
    pub(super) received: Received<'b>,
    pub(super) request_id: Option<&'b [u8]>,
    pub(super) user_agent: Option<&'b str>,
    /// The connection closes after this request (asked, or HTTP/1.0 without keep-alive).
    pub(super) close: bool,
    pub(super) body: BodyFraming,
    /// `Expect: 100-continue`: menshen says 100 Continue before it reads the body.
    pub(super) expect_continue: bool,
    /// The `Upgrade` value of an upgrade request (`Connection: upgrade` and `Upgrade`).
    pub(super) upgrade: Option<&'b [u8]>,
    /// The `Connection` values, whose named fields are not forwarded.
    pub(super) connection: [&'b [u8]; 4],
    pub(super) header_bytes: usize,
}

/// A request the engine serves, as its parts see it.
pub(super) struct Request<'r> {
    pub(super) req: &'r Req<'r>,
    pub(super) parsed: &'r httparse::Request<'r, 'r>,
    pub(super) fields: &'r [Field; MAX_HEADERS],
    /// The server is shutting down: the response closes the connection.
    pub(super) draining: bool,
}

impl<'r> Request<'r> {
    /// The first value of the request field `name` (any case).
    pub(super) fn field(&self, name: &str) -> Option<&'r [u8]> {
        let mut headers = self.parsed.headers.iter();
        headers
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// What an error answer to it is chosen by (`proxy::own`).
    pub(super) fn asking<'a>(&'a self, ctx: &'a Ctx) -> Asking<'a> {
        Asking::new(ctx, self.req.host.name(), |name| self.field(name))
    }
}

impl<'b> Req<'b> {
    pub(super) fn view(&self, tls: bool) -> ReqView<'_> {
        ReqView {
            host: Some(self.host.as_str()),
            method: &self.method,
            path: self.target.path(),
            path_and_query: self.target.as_str(),
            header_bytes: self.header_bytes,
            content_length: match self.body {
                BodyFraming::Length(n) => Some(n),
                BodyFraming::None | BodyFraming::Chunked => None,
            },
            tls,
        }
    }

    /// Whether a field the client sent is forwarded: not hop-by-hop, not named by
    /// `Connection`, not one menshen writes itself.
    pub(super) fn forwards(&self, f: Field, name: &str) -> bool {
        match f {
            Field::Other | Field::UserAgent => {
                self.connection[0].is_empty()
                    || !nominated(
                        self.connection.iter().copied().filter(|v| !v.is_empty()),
                        name,
                    )
            }
            _ => false,
        }
    }
}

/// Why the engine refuses a parsed request.
pub(super) enum NotTaken {
    /// Refused with this status (400, 405, 417, 501) and the reason; the connection closes.
    Refused(u16, &'static str),
}

impl From<TargetError> for NotTaken {
    fn from(e: TargetError) -> Self {
        NotTaken::Refused(
            400,
            match e {
                TargetError::Form => "request target is neither a path nor an http(s) URL",
                TargetError::Escape => "bad percent-escape in the path",
                TargetError::EncodedSeparator => "escaped '/', '\\' or NUL in the path",
                TargetError::Byte => "byte not allowed in the request target",
                TargetError::Fragment => "fragment in the request target",
                TargetError::AboveRoot => "'..' above the root",
                TargetError::Host => "missing or bad Host",
            },
        )
    }
}

/// What the header fields say, before the target is made canonical.
#[derive(Default)]
struct Fields<'b> {
    host: Option<&'b [u8]>,
    hosts: usize,
    length: Option<u64>,
    /// `Transfer-Encoding: chunked` was read (once).
    chunked: bool,
    expect: Option<&'b [u8]>,
    upgrade: Option<&'b [u8]>,
    conn_close: bool,
    conn_keep_alive: bool,
    conn_upgrade: bool,
    connection: [&'b [u8]; 4],
    connections: usize,
    received: Received<'b>,
    request_id: Option<&'b [u8]>,
    user_agent: Option<&'b str>,
    header_bytes: usize,
}

const BAD_LENGTH: NotTaken = NotTaken::Refused(400, "bad or conflicting Content-Length");

impl<'b> Fields<'b> {
    fn read(
        headers: &[httparse::Header<'b>],
        classes: &mut [Field; MAX_HEADERS],
    ) -> Result<Self, NotTaken> {
        let mut f = Fields::default();
        for (h, slot) in headers.iter().zip(classes.iter_mut()) {
            f.header_bytes += h.name.len() + h.value.len() + 4;
            *slot = field(h.name);
            match *slot {
                Field::Host => {
                    f.hosts += 1;
                    f.host = Some(h.value);
                }
                Field::ContentLength => {
                    let n = content_length(h.value).ok_or(BAD_LENGTH)?;
                    if f.length.is_some_and(|l| l != n) {
                        return Err(BAD_LENGTH);
                    }
                    f.length = Some(n);
                }
                Field::TransferEncoding => f.transfer_encoding(h.value)?,
                Field::Expect => f.expect = Some(h.value),
                Field::Upgrade => f.upgrade = Some(h.value),
                Field::Connection => f.connection_tokens(h.value)?,
                Field::XForwardedFor | Field::Forwarded | Field::Via | Field::TraceParent => {
                    f.received.note(*slot, h.value)
                }
                Field::XRequestId if f.request_id.is_none() => f.request_id = Some(h.value),
                Field::UserAgent if f.user_agent.is_none() => {
                    f.user_agent = std::str::from_utf8(h.value).ok()
                }
                _ => {}
            }
        }
        Ok(f)
    }

    /// Only `chunked`, once, is a coding a request may carry here: anything else (`gzip,
    /// chunked`, `chunked, chunked`, `identity`) would need a decoder between client and
    /// backend, and a backend that reads it otherwise could see two requests.
    fn transfer_encoding(&mut self, value: &[u8]) -> Result<(), NotTaken> {
        for coding in list_items(value) {
            if !coding.eq_ignore_ascii_case(b"chunked") || self.chunked {
                return Err(NotTaken::Refused(
                    501,
                    "Transfer-Encoding other than chunked",
                ));
            }
            self.chunked = true;
        }
        Ok(())
    }

    fn connection_tokens(&mut self, value: &'b [u8]) -> Result<(), NotTaken> {
        for token in list_items(value) {
            if token.eq_ignore_ascii_case(b"close") {
                self.conn_close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.conn_keep_alive = true;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                self.conn_upgrade = true;
            }
        }
        let slot = self
            .connection
            .get_mut(self.connections)
            .ok_or(NotTaken::Refused(400, "more than 4 Connection fields"))?;
        *slot = value;
        self.connections += 1;
        Ok(())
    }

    fn body(&self, version: u8) -> Result<BodyFraming, NotTaken> {
        match (self.chunked, self.length) {
            // RFC 9112 6.1: a request with both may be an attempt to smuggle; refused.
            (true, Some(_)) => Err(NotTaken::Refused(
                400,
                "both Content-Length and Transfer-Encoding",
            )),
            (true, None) if version == 0 => Err(NotTaken::Refused(
                400,
                "Transfer-Encoding in an HTTP/1.0 request",
            )),
            (true, None) => Ok(BodyFraming::Chunked),
            (false, Some(0) | None) => Ok(BodyFraming::None),
            (false, Some(n)) => Ok(BodyFraming::Length(n)),
        }
    }
}

/// Reads what the engine needs of a parsed request, its target and Host made canonical.
pub(super) fn request<'b>(
    parsed: &httparse::Request<'_, 'b>,
    classes: &mut [Field; MAX_HEADERS],
) -> Result<Req<'b>, NotTaken> {
    let (Some(method_str), Some(raw_target), Some(version)) =
        (parsed.method, parsed.path, parsed.version)
    else {
        return Err(NotTaken::Refused(400, "incomplete request line"));
    };
    let method = Method::from_bytes(method_str.as_bytes())
        .map_err(|_| NotTaken::Refused(400, "bad method"))?;
    if method == Method::CONNECT {
        return Err(NotTaken::Refused(405, "CONNECT is not served"));
    }
    let f = Fields::read(parsed.headers, classes)?;
    if f.hosts > 1 || (version == 1 && f.hosts == 0) {
        // RFC 9112 3.2: exactly one Host in an HTTP/1.1 request, at most one in HTTP/1.0.
        return Err(NotTaken::Refused(400, "a request needs exactly one Host"));
    }
    let body = f.body(version)?;
    let expect_continue = match f.expect {
        None => false,
        Some(v) if v.trim_ascii().eq_ignore_ascii_case(b"100-continue") => version == 1,
        Some(_) => return Err(NotTaken::Refused(417, "Expect other than 100-continue")),
    };
    let host = f.host.map(std::str::from_utf8).transpose();
    let host = host.map_err(|_| NotTaken::from(TargetError::Host))?;
    let (target, host) = canonical(raw_target, host)?;
    // WebSocket only: any other protocol after a 101 (h2c first of all) would be a byte pipe
    // to the backend that no per-request policy sees.
    let websocket = |v: &&[u8]| v.trim_ascii().eq_ignore_ascii_case(b"websocket");
    let upgrade = f
        .upgrade
        .filter(websocket)
        .filter(|_| f.conn_upgrade && version == 1);
    let close = match version {
        1 => f.conn_close,
        _ => f.conn_close || !f.conn_keep_alive,
    };
    Ok(Req {
        method,
        method_str,
        version,
        target,
        host,
        received: f.received,
        request_id: f.request_id,
        user_agent: f.user_agent,
        close,
        body,
        expect_continue,
        upgrade,
        connection: f.connection,
        header_bytes: f.header_bytes,
    })
}

/// Writes the request for the backend into `out`: the client's fields less hop-by-hop,
/// framing and forwarding ones, the path rewritten, the Host overridden, the framing and the
/// upgrade handshake as menshen sends them, then menshen's forwarding fields.
pub(super) fn upstream_request(
    out: &mut Vec<u8>,
    request: &Request<'_>,
    action: &ProxyAction,
    ctx: &Ctx,
    facts: &ConnFacts,
) {
    let req = request.req;
    out.clear();
    out.extend_from_slice(req.method_str.as_bytes());
    out.push(b' ');
    let target = req.target.as_str();
    match action.rewrite.apply(ctx.route_prefix(), target) {
        Some(path) => out.extend_from_slice(path.as_bytes()),
        None => out.extend_from_slice(target.as_bytes()),
    }
    // An HTTP/1.0 client's request goes as HTTP/1.0, so the backend answers it in framing it can
    // read (a length or the close; never chunked, never 1xx).
    match req.version {
        0 => out.extend_from_slice(b" HTTP/1.0\r\n"),
        _ => out.extend_from_slice(b" HTTP/1.1\r\n"),
    }
    for (h, f) in request.parsed.headers.iter().zip(request.fields) {
        if req.forwards(*f, h.name) && !edited_out(ctx, h.name) {
            push_field(out, h.name.as_bytes(), h.value);
        }
    }
    let host = match &action.host_header {
        Some(host) => host.as_bytes(),
        None => req.host.as_str().as_bytes(),
    };
    push_field(out, b"host", host);
    if let Some(protocol) = req.upgrade {
        push_field(out, b"connection", b"upgrade");
        push_field(out, b"upgrade", protocol);
    }
    match req.body {
        BodyFraming::None => {}
        BodyFraming::Length(n) => push_field(
            out,
            b"content-length",
            itoa::Buffer::new().format(n).as_bytes(),
        ),
        BodyFraming::Chunked => push_field(out, b"transfer-encoding", b"chunked"),
    }
    let protocol = match req.version {
        0 => Protocol::Http10,
        _ => Protocol::Http11,
    };
    let hop = Hop {
        host: req.host.as_str(),
        protocol,
        received: req.received,
    };
    forwarding_fields(&hop, ctx, facts, |name, parts| {
        push_field_parts(out, name.as_bytes(), parts)
    });
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Framing, close, expect-continue and upgrade of a request, or the status refusing it.
    type Read = Result<(BodyFraming, bool, bool, Option<Vec<u8>>), u16>;

    fn parse(raw: &[u8]) -> Read {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        assert!(parsed.parse(raw).expect("parses").is_complete());
        let mut classes = [Field::Other; MAX_HEADERS];
        match request(&parsed, &mut classes) {
            Ok(r) => Ok((
                r.body,
                r.close,
                r.expect_continue,
                r.upgrade.map(<[u8]>::to_vec),
            )),
            Err(NotTaken::Refused(status, _)) => Err(status),
        }
    }

    #[test]
    fn framing_is_one_length_or_chunked() {
        let ok = |raw: &str| parse(raw.as_bytes()).map(|r| r.0);
        let h = "GET / HTTP/1.1\r\nHost: a.cn\r\n";
        assert_eq!(ok(&format!("{h}\r\n")), Ok(BodyFraming::None));
        assert_eq!(
            ok(&format!("{h}Content-Length: 0\r\n\r\n")),
            Ok(BodyFraming::None)
        );
        assert_eq!(
            ok(&format!(
                "{h}Content-Length: 5\r\nContent-Length: 5\r\n\r\n"
            )),
            Ok(BodyFraming::Length(5))
        );
        assert_eq!(
            ok(&format!(
                "{h}Content-Length: 5\r\nContent-Length: 6\r\n\r\n"
            )),
            Err(400)
        );
        assert_eq!(ok(&format!("{h}Content-Length: +5\r\n\r\n")), Err(400));
        assert_eq!(ok(&format!("{h}Content-Length: 5, 6\r\n\r\n")), Err(400));
        assert_eq!(
            ok(&format!("{h}Transfer-Encoding: CHUNKED\r\n\r\n")),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(
            ok(&format!(
                "{h}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
            )),
            Err(400)
        );
        assert_eq!(
            ok(&format!("{h}Transfer-Encoding: gzip, chunked\r\n\r\n")),
            Err(501)
        );
        assert_eq!(
            ok(&format!("{h}Transfer-Encoding: chunked, chunked\r\n\r\n")),
            Err(501)
        );
        assert_eq!(
            ok(&format!(
                "{h}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
            )),
            Err(501)
        );
        assert_eq!(
            ok("POST / HTTP/1.0\r\nHost: a.cn\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(400)
        );
    }

    #[test]
    fn connection_expect_and_upgrade() {
        let h = "GET / HTTP/1.1\r\nHost: a.cn\r\n";
        let get = |extra: &str| parse(format!("{h}{extra}\r\n").as_bytes());
        assert_eq!(get("Connection: close\r\n").map(|r| r.1), Ok(true));
        assert_eq!(get("").map(|r| r.1), Ok(false));
        let old = parse(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(old.map(|r| r.1), Err(400), "no Host at all");
        let old = parse(b"GET / HTTP/1.0\r\nHost: a.cn\r\n\r\n").map(|r| r.1);
        assert_eq!(old, Ok(true), "HTTP/1.0 closes by default");
        let old = parse(b"GET / HTTP/1.0\r\nHost: a.cn\r\nConnection: Keep-Alive\r\n\r\n");
        assert_eq!(old.map(|r| r.1), Ok(false));
        assert_eq!(get("Expect: 100-Continue\r\n").map(|r| r.2), Ok(true));
        assert_eq!(get("Expect: x\r\n").map(|r| r.2), Err(417));
        let ws = get("Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n");
        assert_eq!(ws.map(|r| r.3), Ok(Some(b"websocket".to_vec())));
        let h2c = get("Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n").map(|r| r.3);
        assert_eq!(h2c, Ok(None), "only WebSocket is tunnelled");
        let no = get("Upgrade: websocket\r\n").map(|r| r.3);
        assert_eq!(
            no,
            Ok(None),
            "Upgrade without Connection: upgrade is not a handshake"
        );
        assert_eq!(
            parse(b"CONNECT a.cn:443 HTTP/1.1\r\nHost: a.cn\r\n\r\n"),
            Err(405)
        );
        let twice = get("Host: b.cn\r\n");
        assert_eq!(twice, Err(400));
    }
}
