//! menshen's own HTTP/1 keep-alive loop, for the common request: HTTP/1.1 from the client,
//! no request body, proxied to a plain-HTTP/1 backend. Everything else goes to pingora-proxy.
//!
//! Why: pingora-proxy's per-request machinery (its session, the two channels and task join of
//! `proxy_1to1`, header clones and sanitising) and pingora-core's connection pool cost about
//! 7 µs of a keep-alive request that nginx serves in 12-14 (README, Performance). This loop reads
//! the request header into one buffer, parses it in place (httparse), runs the same phases as
//! the pingora-proxy path (`identify`, `decide`, `pick_backend`, `connect_failed`, the
//! forwarded headers, `ResponseEdits`, `finish`), writes the upstream request straight from the
//! parsed header, and copies the response back with its own framing.
//!
//! What it takes (checked before anything with a side effect, such as a rate-limit token):
//! HTTP/1.1, an origin-form target of plain characters, exactly one Host, no body
//! (`Content-Length: 0` or none, no Transfer-Encoding), no Expect, no Upgrade, a Connection
//! header naming only `close` or `keep-alive`, at most 64 headers in 16 KiB, a known site and
//! route proxying to a plain-HTTP upstream, and a connection under the per-IP limit. Anything
//! else, including a header it cannot parse, is handed to pingora-proxy with the bytes read so
//! far replayed ([`ClientConn::replay`]); pingora-proxy then serves the rest of that connection.
//!
//! Upstream connections come from a per-thread pool (`route::pool`). A request whose reused
//! connection fails before any response byte is sent again once on a new connection (it has
//! no body); a failed connect ejects the backend and tries another, as in the pingora path.
//! Interim 1xx responses are dropped (as nginx does). Header names it adds are lowercase, as
//! pingora writes them.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::{HeaderValue, Method};
use pingora::protocols::tls::SslDigest;
use pingora::protocols::{GetSocketDigest, Ssl};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::conn::ClientConn;
use super::{access, forwarded_for, Ctx, Located, Peer, Proxy, ReqView, ResponseEdits};
use crate::policy::ip::canonical;
use crate::policy::Denial;
use crate::route::pool;
use crate::route::router::ProxyAction;
use crate::route::Action;
use crate::snapshot::Snapshot;
use crate::tls::resolver::ConnInfo;

/// Request header bytes read before the request is handed to pingora-proxy.
const MAX_HEAD: usize = 16 * 1024;
/// Headers of a request or response this loop parses.
const MAX_HEADERS: usize = 64;
/// Largest response header from a backend (a bigger one is a 502).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Backend read buffer: the body is copied through it.
const UPSTREAM_BUF: usize = 32 * 1024;
/// Body bytes sent in the same write as the response header.
const COALESCE: usize = 16 * 1024;

/// How the loop left a connection.
pub(crate) enum Served {
    /// Closed (or to be closed): the client is done, or a failure ended it.
    Closed,
    /// A request this loop does not take: pingora-proxy serves the connection from here.
    HandOver(ClientConn),
}

/// What a connection tells every request on it.
struct ConnFacts {
    peer: Peer,
    listener_port: Option<u16>,
    tls: Option<Arc<SslDigest>>,
}

impl ConnFacts {
    fn of(conn: &ClientConn) -> Self {
        let digest = conn.get_socket_digest();
        let inet = |a: Option<&pingora::protocols::l4::socket::SocketAddr>| {
            a.and_then(|a| a.as_inet()).copied()
        };
        let tls = conn.get_ssl_digest();
        let sni = tls
            .as_ref()
            .and_then(|t| t.extension.get::<ConnInfo>())
            .and_then(|info| info.sni.clone());
        let addr = inet(digest.as_ref().and_then(|d| d.peer_addr()))
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        Self {
            peer: Peer {
                addr,
                ip_text: HeaderValue::from_str(&canonical(addr.ip()).to_string()).ok(),
                sni,
            },
            listener_port: inet(digest.as_ref().and_then(|d| d.local_addr())).map(|a| a.port()),
            tls,
        }
    }
}

/// A request header field, by what the loop does with it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
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

fn field(name: &str) -> Field {
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
struct Req<'b> {
    method: Method,
    method_str: &'b str,
    target: &'b str,
    path: &'b str,
    query: Option<&'b str>,
    host: &'b str,
    forwarded_for: Option<&'b [u8]>,
    request_id: Option<&'b [u8]>,
    user_agent: Option<&'b str>,
    /// The client asked to close after this request.
    close: bool,
    header_bytes: usize,
}

/// A request the loop serves, as its parts see it.
struct Request<'r, 's> {
    req: &'r Req<'r>,
    view: &'r ReqView<'r>,
    at: &'r Located<'r, 's>,
    parsed: &'r httparse::Request<'r, 'r>,
    fields: &'r [Field; MAX_HEADERS],
    /// The server is shutting down: the response closes the connection.
    draining: bool,
}

impl<'b> Req<'b> {
    fn view(&self, tls: bool) -> ReqView<'_> {
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
    for token in value.split(|&b| b == b',') {
        let token = token.trim_ascii();
        if token.eq_ignore_ascii_case(b"close") {
            close = true;
        } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
            return None;
        }
    }
    Some(close)
}

/// Reads what the loop needs of a parsed request; `None` if it is not one the loop takes.
fn request<'b>(
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

/// The end of the header block that starts `buf`, searching from `from`: just past the first
/// empty line (CRLF or bare LF).
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(at) = buf.get(i..)?.iter().position(|&b| b == b'\n') {
        let nl = i + at;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Follows chunked framing over the bytes that pass through, to find where the body ends.
/// Strict, as the bytes go on to the client unchanged: CRLF line ends only, hex sizes of at
/// most 15 significant digits, extensions and trailer fields without control bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunks {
    /// In a size line: its value so far, significant digits, whether a digit was seen.
    Size {
        value: u64,
        digits: u8,
        seen: bool,
    },
    /// After the size: whitespace, then `;` or CRLF.
    SizeEnd {
        size: u64,
    },
    /// In a chunk extension.
    Ext {
        size: u64,
    },
    /// The size line's CR is in; its LF is due.
    SizeLf {
        size: u64,
    },
    Data(u64),
    /// A chunk's data is in; its CR is due.
    DataCr,
    DataLf,
    /// In the trailer section: the current line's length, and whether its CR is in.
    Trailer {
        line: usize,
        cr: bool,
    },
    Done,
}

impl Chunks {
    fn new() -> Self {
        Chunks::Size {
            value: 0,
            digits: 0,
            seen: false,
        }
    }

    /// Consumes the part of `buf` that belongs to the body: `(bytes, payload bytes)`; `Err` on a
    /// framing error.
    fn advance(&mut self, buf: &[u8]) -> Result<(usize, usize), ()> {
        let mut i = 0;
        let mut payload = 0;
        while i < buf.len() {
            if let Chunks::Data(left) = self {
                let take = (*left).min((buf.len() - i) as u64);
                i += take as usize;
                payload += take as usize;
                *left -= take;
                if *left == 0 {
                    *self = Chunks::DataCr;
                }
                continue;
            }
            if *self == Chunks::Done {
                break;
            }
            let b = buf[i];
            i += 1;
            let control = (b < 0x20 && b != b'\t') || b == 0x7f;
            *self = match *self {
                Chunks::Size {
                    value,
                    digits,
                    seen,
                } => match ((b as char).to_digit(16), seen, b) {
                    (Some(d), _, _) => {
                        let digits = digits + u8::from(value > 0 || d > 0);
                        if digits > 15 {
                            return Err(());
                        }
                        Chunks::Size {
                            value: value * 16 + u64::from(d),
                            digits,
                            seen: true,
                        }
                    }
                    (None, true, b' ' | b'\t') => Chunks::SizeEnd { size: value },
                    (None, true, b';') => Chunks::Ext { size: value },
                    (None, true, b'\r') => Chunks::SizeLf { size: value },
                    _ => return Err(()),
                },
                Chunks::SizeEnd { size } => match b {
                    b' ' | b'\t' => Chunks::SizeEnd { size },
                    b';' => Chunks::Ext { size },
                    b'\r' => Chunks::SizeLf { size },
                    _ => return Err(()),
                },
                Chunks::Ext { size } => match b {
                    b'\r' => Chunks::SizeLf { size },
                    _ if control => return Err(()),
                    _ => Chunks::Ext { size },
                },
                Chunks::SizeLf { size: 0 } if b == b'\n' => Chunks::Trailer { line: 0, cr: false },
                Chunks::SizeLf { size } if b == b'\n' => Chunks::Data(size),
                Chunks::DataCr if b == b'\r' => Chunks::DataLf,
                Chunks::DataLf if b == b'\n' => Chunks::new(),
                Chunks::Trailer { line, cr: false } => match b {
                    b'\r' => Chunks::Trailer { line, cr: true },
                    _ if control => return Err(()),
                    _ => Chunks::Trailer {
                        line: line + 1,
                        cr: false,
                    },
                },
                Chunks::Trailer { line: 0, cr: true } if b == b'\n' => Chunks::Done,
                Chunks::Trailer { cr: true, .. } if b == b'\n' => {
                    Chunks::Trailer { line: 0, cr: false }
                }
                _ => return Err(()),
            };
        }
        Ok((i, payload))
    }
}

/// Runs `io` with a time limit that costs no timer when `io` is ready at once.
async fn within<T>(
    limit: Option<Duration>,
    io: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    let mut io = std::pin::pin!(io);
    let Some(limit) = limit else {
        return io.await;
    };
    let first = std::future::poll_fn(|cx| match io.as_mut().poll(cx) {
        std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await;
    if let Some(r) = first {
        return r;
    }
    match tokio::time::timeout(limit, io).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
    }
}

/// A backend's response header, read to its end.
struct ResponseHead {
    len: usize,
    status: u16,
    framing: Framing,
    /// The backend keeps the connection open after this response.
    keepalive: bool,
}

/// Interim (1xx) responses skipped before the final one.
const MAX_INTERIM: usize = 8;
/// Fields of a response header parsed on the heap when the usual 64 are not enough.
const MAX_RESPONSE_HEADERS: usize = 256;

/// Parses the response header `head` and hands it to `f`: 64 fields on the stack, up to 256 on
/// the heap for the rare bigger header.
fn with_response<T>(
    head: &[u8],
    f: impl FnOnce(&httparse::Response<'_, '_>) -> T,
) -> Result<T, String> {
    // As lenient as pingora-core's parser: a space before a field's colon, folded lines.
    let mut config = httparse::ParserConfig::default();
    config
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match config.parse_response(&mut resp, head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => return Ok(f(&resp)),
        Err(httparse::Error::TooManyHeaders) => {}
        Ok(_) => return Err("bad response header".into()),
        Err(e) => return Err(format!("bad response header: {e}")),
    }
    let mut headers = vec![httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match config.parse_response(&mut resp, head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => Ok(f(&resp)),
        Ok(_) => Err("bad response header".into()),
        Err(e) => Err(format!("bad response header: {e}")),
    }
}

/// Reads one response header (an interim 1xx one included) into `up`. `received` is set once
/// any byte of a response arrived.
async fn read_response_head(
    stream: &mut TcpStream,
    up: &mut BytesMut,
    read_timeout: Option<Duration>,
    head_request: bool,
    received: &mut bool,
) -> Result<ResponseHead, (io::ErrorKind, String)> {
    let bad = |e: String| (io::ErrorKind::InvalidData, e);
    let mut scanned = 0;
    loop {
        if let Some(end) = head_end(up, scanned) {
            let head = with_response(&up[..end], |resp| response_head(resp, end, head_request))
                .map_err(bad)?;
            let head = head.ok_or_else(|| bad("bad status or Content-Length".into()))?;
            if head.status == 101 {
                return Err(bad("101 to a request without Upgrade".into()));
            }
            return Ok(head);
        }
        scanned = up.len().saturating_sub(2);
        if up.len() >= MAX_RESPONSE_HEAD {
            return Err(bad("response header too large".into()));
        }
        up.reserve(UPSTREAM_BUF);
        match within(read_timeout, stream.read_buf(up)).await {
            Ok(0) => {
                return Err((
                    io::ErrorKind::UnexpectedEof,
                    "backend closed the connection before a response".into(),
                ))
            }
            Ok(_) => *received = true,
            Err(e) => return Err((e.kind(), format!("reading the response: {e}"))),
        }
    }
}

/// A Content-Length value: digits only, or a list of the same digits (RFC 9110 8.6).
fn content_length(value: &[u8]) -> Option<u64> {
    let mut length = None;
    for item in value.split(|&b| b == b',') {
        let digits = item.trim_ascii();
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
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

/// The framing and keep-alive of a parsed response; `None` on a status outside 100-599 or a bad
/// or conflicting Content-Length.
fn response_head(
    resp: &httparse::Response<'_, '_>,
    len: usize,
    head_request: bool,
) -> Option<ResponseHead> {
    let status = resp.code.filter(|s| (100..600).contains(s))?;
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut close = resp.version != Some(1);
    for h in resp.headers.iter() {
        match field(h.name) {
            Field::ContentLength => {
                let v = content_length(h.value)?;
                if length.is_some_and(|l| l != v) {
                    return None;
                }
                length = Some(v);
            }
            Field::TransferEncoding => {
                let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
                chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
            Field::Connection => {
                for token in h.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && resp.version == Some(0) {
                        close = false;
                    }
                }
            }
            _ => {}
        }
    }
    // Both lengths: Transfer-Encoding wins (RFC 9112 6.3), and a backend that sends both is not
    // trusted with another request on this connection.
    close |= chunked.is_some() && length.is_some();
    let framing = if head_request || status == 204 || status == 304 || status < 200 {
        Framing::None
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        }
    };
    Some(ResponseHead {
        len,
        status,
        framing,
        keepalive: !close && framing != Framing::UntilClose,
    })
}

/// Writes the response header the client gets into `out`: the backend's, less hop-by-hop
/// fields (and a Content-Length that chunked framing overrides), with the site's edits and the
/// request id.
fn client_response_head(
    out: &mut Vec<u8>,
    resp: &httparse::Response<'_, '_>,
    framing: Framing,
    edits: &ResponseEdits<'_>,
    request_id: &[u8],
    close: bool,
) {
    status_line(out, resp);
    let hop = HopByHop::of(resp);
    let mut has_date = false;
    for h in resp.headers.iter() {
        match field(h.name) {
            Field::XRequestId => continue,
            Field::ContentLength if matches!(framing, Framing::Chunked | Framing::UntilClose) => {
                continue
            }
            f if hop.drops(f, h.name) => continue,
            _ => {}
        }
        has_date |= h.name.eq_ignore_ascii_case("date");
        let edited = |n: &http::HeaderName| h.name.eq_ignore_ascii_case(n.as_str());
        if edits.remove.iter().any(edited)
            || edits.add.iter().any(|(n, _)| edited(n))
            || (edits.hsts.is_some() && edited(&http::header::STRICT_TRANSPORT_SECURITY))
        {
            continue;
        }
        push_field(out, h.name.as_bytes(), h.value);
    }
    for (name, value) in edits.add {
        push_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if let Some(hsts) = edits.hsts {
        push_field(out, b"strict-transport-security", hsts.as_bytes());
    }
    push_field(out, b"x-request-id", request_id);
    if !has_date {
        // A response forwarded without a Date gets one (RFC 9110 6.6.1).
        push_date(out);
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a Date field for now, formatted once a second per thread.
fn push_date(out: &mut Vec<u8>) {
    thread_local! {
        static DATE: std::cell::RefCell<(u64, String)> = const {
            std::cell::RefCell::new((0, String::new()))
        };
    }
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        if date.0 != secs || date.1.is_empty() {
            *date = (secs, httpdate::fmt_http_date(now));
        }
        push_field(out, b"date", date.1.as_bytes());
    });
}

/// Writes the status line of `resp` (HTTP/1.1, the backend's reason or the standard one).
fn status_line(out: &mut Vec<u8>, resp: &httparse::Response<'_, '_>) {
    let status = resp.code.unwrap_or(502);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&itoa3(status));
    out.push(b' ');
    let reason = resp
        .reason
        .filter(|r| !r.is_empty())
        .or_else(|| http::StatusCode::from_u16(status).ok()?.canonical_reason())
        .unwrap_or("");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The fields of a backend's response that belong to its connection, not the client's: the
/// hop-by-hop ones and those its `Connection` header names.
struct HopByHop<'r> {
    connection: [&'r [u8]; 4],
    count: usize,
}

impl<'r> HopByHop<'r> {
    fn of(resp: &httparse::Response<'_, 'r>) -> Self {
        let mut hop = HopByHop {
            connection: [&[]; 4],
            count: 0,
        };
        for h in resp.headers.iter() {
            if h.name.len() == 10 && h.name.eq_ignore_ascii_case("connection") {
                if let Some(slot) = hop.connection.get_mut(hop.count) {
                    *slot = h.value;
                    hop.count += 1;
                }
            }
        }
        hop
    }

    fn drops(&self, f: Field, name: &str) -> bool {
        match f {
            Field::Connection | Field::HopByHop | Field::Upgrade => true,
            // The body's framing stays, whatever the Connection header says.
            Field::ContentLength | Field::TransferEncoding => false,
            _ => self.connection[..self.count].iter().any(|value| {
                value
                    .split(|&b| b == b',')
                    .any(|token| token.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
            }),
        }
    }
}

/// Writes an interim response for the client: the backend's, less its connection's fields.
fn interim_head(out: &mut Vec<u8>, resp: &httparse::Response<'_, '_>) {
    status_line(out, resp);
    let hop = HopByHop::of(resp);
    for h in resp.headers.iter() {
        if !hop.drops(field(h.name), h.name) {
            push_field(out, h.name.as_bytes(), h.value);
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes one header field; a value folded over lines (obs-fold, which the response parser
/// accepts as pingora-core's does) goes out on one line, its line breaks as spaces.
fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    if value.iter().any(|&b| b == b'\r' || b == b'\n') {
        out.extend(
            value
                .iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
    } else {
        out.extend_from_slice(value);
    }
    out.extend_from_slice(b"\r\n");
}

/// A status code as its three digits.
fn itoa3(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

/// Writes a response menshen makes itself (denial or error) into `out`.
fn own_response(
    out: &mut Vec<u8>,
    status: u16,
    extra: Option<(&str, &str)>,
    body: &[u8],
    request_id: &[u8],
    close: bool,
    head_request: bool,
) {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&itoa3(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    push_field(out, b"content-type", b"text/plain; charset=utf-8");
    push_field(out, b"content-length", body.len().to_string().as_bytes());
    if close {
        push_field(out, b"connection", b"close");
    }
    push_field(out, b"x-request-id", request_id);
    push_date(out);
    if let Some((name, value)) = extra {
        push_field(out, name.as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if !head_request {
        out.extend_from_slice(body);
    }
}

/// Per-connection buffers for the way out, reused by every request.
struct Buffers {
    /// The next write: an upstream request, or a response header (with its first body bytes).
    out: Vec<u8>,
    /// What the backend sent.
    up: BytesMut,
}

/// The end of one request, for the access log and the connection.
struct Outcome {
    status: u16,
    bytes_out: usize,
    /// Keep the client connection for another request.
    keep: bool,
    error: Option<String>,
}

impl Proxy {
    /// Serves the HTTP/1 requests of `conn` this loop takes, until the client is done or a
    /// request it does not take arrives.
    pub(crate) async fn serve_h1(&self, mut conn: ClientConn, shutdown: &ShutdownWatch) -> Served {
        let facts = ConnFacts::of(&conn);
        let mut shutdown = shutdown.clone();
        // What the client sent and the loop has not used yet.
        let mut input = BytesMut::with_capacity(4096);
        let mut bufs = Buffers {
            out: Vec::with_capacity(1024),
            up: BytesMut::new(),
        };
        // The first request's header is timed by the connection's clock; later ones wait for
        // their first byte at most the keep-alive timeout.
        let mut idle: Option<Option<Duration>> = None;
        loop {
            let end = match self
                .read_head(&mut conn, &mut input, idle, &mut shutdown)
                .await
            {
                Some(Some(end)) => end,
                Some(None) => return self.hand_over(conn, input),
                None => return Served::Closed,
            };
            let (keep, keepalive) = {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut parsed = httparse::Request::new(&mut headers);
                let complete = matches!(
                    parsed.parse(&input[..end]),
                    Ok(httparse::Status::Complete(n)) if n == end
                );
                let mut fields = [Field::Other; MAX_HEADERS];
                let req = complete.then(|| request(&parsed, &mut fields)).flatten();
                let Some(req) = req else {
                    return self.hand_over(conn, input);
                };
                let snapshot = self.state.load_full();
                let view = req.view(facts.tls.is_some());
                let at = Located::find(&view, &snapshot);
                let Some(action) = takes(&at, &conn) else {
                    return self.hand_over(conn, input);
                };
                let keepalive = snapshot.policy.keepalive_timeout_seconds;
                let request = Request {
                    req: &req,
                    view: &view,
                    at: &at,
                    parsed: &parsed,
                    fields: &fields,
                    draining: *shutdown.borrow(),
                };
                let outcome = self
                    .one(&mut conn, &facts, &request, action, &snapshot, &mut bufs)
                    .await;
                (outcome, keepalive)
            };
            input.advance(end);
            if !keep || *shutdown.borrow() {
                // A TLS close sends what rustls still holds first: a client that stopped
                // reading gets no longer than a write's time limit.
                let limit = self.state.load().policy.send_timeout;
                let _ = tokio::time::timeout(limit, conn.shutdown()).await;
                return Served::Closed;
            }
            conn.request_done();
            idle = Some((keepalive > 0).then(|| Duration::from_secs(keepalive)));
            if input.is_empty() {
                // An idle connection holds no backend buffer (most of what it would keep).
                bufs.up = BytesMut::new();
            } else {
                // The next request's first bytes came with this one: its clock runs from now.
                conn.header_started();
            }
        }
    }

    fn hand_over(&self, mut conn: ClientConn, input: BytesMut) -> Served {
        conn.replay(input.freeze());
        Served::HandOver(conn)
    }

    /// Reads until `input` holds a whole request header: `Some(Some(end))`; `Some(None)` when
    /// the header is too big for this loop (or it is not HTTP); `None` when the connection is
    /// done (closed, timed out, shutting down).
    async fn read_head(
        &self,
        conn: &mut ClientConn,
        input: &mut BytesMut,
        idle: Option<Option<Duration>>,
        shutdown: &mut ShutdownWatch,
    ) -> Option<Option<usize>> {
        let mut scanned = 0;
        loop {
            if let Some(end) = head_end(input, scanned) {
                return Some(Some(end));
            }
            scanned = input.len().saturating_sub(2);
            if input.len() >= MAX_HEAD {
                return Some(None);
            }
            input.reserve(4096);
            // Between requests the wait for a first byte is the keep-alive timeout's; once a
            // byte is in, the connection's header clock runs.
            let limit = match idle {
                Some(limit) if input.is_empty() => limit,
                _ => None,
            };
            let read = tokio::select! {
                biased;
                r = within(limit, conn.read_buf(input)) => r,
                Ok(()) = shutdown.changed() => return None,
            };
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Serves one request the loop takes; returns whether the connection stays open.
    async fn one(
        &self,
        conn: &mut ClientConn,
        facts: &ConnFacts,
        request: &Request<'_, '_>,
        action: &ProxyAction,
        snapshot: &Arc<Snapshot>,
        bufs: &mut Buffers,
    ) -> bool {
        conn.header_done();
        let req = request.req;
        let mut ctx = Ctx::new();
        self.identify(
            &mut ctx,
            &snapshot.policy,
            &facts.peer,
            req.forwarded_for,
            req.request_id,
        );
        let denial = self.decide(request.view, request.at, &mut ctx, snapshot);
        ctx.snapshot = Some(snapshot.clone());
        let head_request = req.method == Method::HEAD;
        let outcome = match denial {
            Some(denial) => {
                ctx.decision = Some(denial.rule.clone());
                let close = req.close || request.draining;
                self.deny(conn, &mut bufs.out, &denial, &ctx, close, head_request)
                    .await
            }
            None => {
                self.proxy(conn, facts, request, action, &mut ctx, bufs)
                    .await
            }
        };
        let log = access::Facts {
            listener_port: facts.listener_port,
            tls: facts.tls.as_deref(),
            host: Some(req.host),
            method: req.method_str,
            path: req.path,
            query: req.query,
            user_agent: req.user_agent,
            status: outcome.status,
            bytes_in: 0,
            bytes_out: outcome.bytes_out,
        };
        self.finish(
            &ctx,
            &log,
            outcome.error.as_ref().map(|e| e as &dyn std::fmt::Display),
        );
        outcome.keep
    }

    async fn deny(
        &self,
        conn: &mut ClientConn,
        out: &mut Vec<u8>,
        denial: &Denial,
        ctx: &Ctx,
        close: bool,
        head_request: bool,
    ) -> Outcome {
        let send = send_timeout(ctx);
        out.clear();
        let extra = denial
            .header
            .as_ref()
            .map(|(n, v)| (n.as_str(), v.as_str()));
        own_response(
            out,
            denial.status,
            extra,
            &denial.body,
            ctx.request_id.as_bytes(),
            close,
            head_request,
        );
        let sent = write_out(conn, out, send).await;
        Outcome {
            status: denial.status,
            bytes_out: if head_request { 0 } else { denial.body.len() },
            keep: sent.is_ok() && !close,
            error: sent.err().map(|e| e.to_string()),
        }
    }

    /// Sends the request to a backend and its response to the client.
    #[allow(clippy::too_many_arguments)]
    async fn proxy(
        &self,
        conn: &mut ClientConn,
        facts: &ConnFacts,
        request: &Request<'_, '_>,
        action: &ProxyAction,
        ctx: &mut Ctx,
        bufs: &mut Buffers,
    ) -> Outcome {
        let send = send_timeout(ctx);
        let req = request.req;
        let head_request = req.method == Method::HEAD;
        let options = action.upstream.options();
        let Buffers { out, up, .. } = bufs;
        let id = ctx.request_id.clone();
        let (mut stream, addr, mut head) =
            match self.exchange(request, action, ctx, facts, out, up).await {
                Ok(ok) => ok,
                Err((status, error)) => {
                    let sent = error_response(conn, out, status, id.as_bytes(), head_request, send);
                    return Outcome {
                        status,
                        bytes_out: sent.await,
                        keep: false,
                        error: Some(error),
                    };
                }
            };
        // Interim responses (103 Early Hints, ...) go to the client as they come, as
        // pingora-proxy passes them.
        let mut interim = 0;
        let mut received = true;
        while head.status < 200 {
            interim += 1;
            let forwarded = if interim > MAX_INTERIM {
                Err("too many interim responses".to_owned())
            } else {
                out.clear();
                with_response(&up[..head.len], |resp| interim_head(out, resp))
            };
            if let Err(error) = forwarded {
                let sent = error_response(conn, out, 502, id.as_bytes(), head_request, send);
                return Outcome {
                    status: 502,
                    bytes_out: sent.await,
                    keep: false,
                    error: Some(error),
                };
            }
            if let Err(e) = write_out(conn, out, send).await {
                return Outcome {
                    status: head.status,
                    bytes_out: 0,
                    keep: false,
                    error: Some(format!("writing an interim response: {e}")),
                };
            }
            up.advance(head.len);
            let timeout = options.read_timeout;
            head = match read_response_head(&mut stream, up, timeout, head_request, &mut received)
                .await
            {
                Ok(head) => head,
                Err((kind, error)) => {
                    let status = io_status(kind);
                    let sent = error_response(conn, out, status, id.as_bytes(), head_request, send);
                    return Outcome {
                        status,
                        bytes_out: sent.await,
                        keep: false,
                        error: Some(format!("{addr}: {error}")),
                    };
                }
            };
        }
        ctx.upstream_status = Some(head.status);
        // The response header for the client, then the body as it comes.
        let close = req.close || request.draining || head.framing == Framing::UntilClose;
        let cut = |sent, error: String| Outcome {
            status: head.status,
            bytes_out: sent,
            keep: false,
            error: Some(error),
        };
        out.clear();
        let edits = ResponseEdits::of(ctx, facts.tls.is_some());
        let id = ctx.request_id.as_bytes();
        let written = with_response(&up[..head.len], |resp| {
            client_response_head(out, resp, head.framing, &edits, id, close)
        });
        if let Err(e) = written {
            // Parsed the same way by read_response_head: cannot fail here.
            return cut(0, e);
        }
        up.advance(head.len);
        let mut body = Body::new(head.framing);
        let bad_framing = "bad chunked framing from the backend";
        let Ok((first, mut sent)) = body.take(up) else {
            return cut(0, bad_framing.into());
        };
        let written = if first <= COALESCE {
            out.extend_from_slice(&up[..first]);
            write_out(conn, out, send).await
        } else {
            match within(send, conn.write_all(out)).await {
                Ok(()) => write_out(conn, &up[..first], send).await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = written {
            return cut(0, format!("writing the response: {e}"));
        }
        let mut extra = up.len() > first;
        up.clear();
        while !body.is_done() {
            if up.capacity() < UPSTREAM_BUF {
                up.reserve(UPSTREAM_BUF);
            }
            match within(options.read_timeout, stream.read_buf(up)).await {
                Ok(0) if head.framing == Framing::UntilClose => break,
                Ok(0) => return cut(sent, "backend closed mid-body".into()),
                Ok(_) => {}
                Err(e) => return cut(sent, format!("reading the response body: {e}")),
            }
            let Ok((n, payload)) = body.take(up) else {
                return cut(sent, bad_framing.into());
            };
            extra |= up.len() > n;
            if let Err(e) = write_out(conn, &up[..n], send).await {
                return cut(sent, format!("writing the response: {e}"));
            }
            sent += payload;
            up.clear();
        }
        if head.keepalive && !extra {
            pool::put(addr, stream, options.idle_timeout);
        }
        Outcome {
            status: head.status,
            bytes_out: sent,
            keep: !close,
            error: None,
        }
    }

    /// Sends the request in `out` to a backend (another after a failed connect, a new
    /// connection after a stale pooled one) and reads the response header into `up`.
    async fn exchange(
        &self,
        request: &Request<'_, '_>,
        action: &ProxyAction,
        ctx: &mut Ctx,
        facts: &ConnFacts,
        out: &mut Vec<u8>,
        up: &mut BytesMut,
    ) -> Result<(TcpStream, SocketAddr, ResponseHead), (u16, String)> {
        let (req, parsed) = (request.req, request.parsed);
        let options = action.upstream.options();
        let head_request = req.method == Method::HEAD;
        'backends: loop {
            let header = |name: &http::HeaderName| {
                parsed
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name.as_str()))
                    .map(|h| h.value)
            };
            let addr = self
                .pick_backend(action, ctx, req.path, header)
                .map_err(|e| (502, e.to_string()))?;
            // The request is written once the backend is known (its Host may be its own).
            upstream_request(out, request, action, ctx, facts);
            let mut pooled = pool::take(addr);
            loop {
                let reused = pooled.is_some();
                let mut stream = match pooled.take() {
                    Some(stream) => stream,
                    None => match pool::connect(addr, options.connection_timeout).await {
                        Ok(stream) => stream,
                        Err(e) => {
                            if self.connect_failed(ctx, addr) {
                                continue 'backends;
                            }
                            return Err((io_status(e.kind()), format!("connect to {addr}: {e}")));
                        }
                    },
                };
                up.clear();
                let mut received = false;
                let sent = within(options.write_timeout, stream.write_all(out)).await;
                let result = match sent {
                    Ok(()) => {
                        let timeout = options.read_timeout;
                        read_response_head(&mut stream, up, timeout, head_request, &mut received)
                            .await
                    }
                    Err(e) => Err((e.kind(), format!("writing the request: {e}"))),
                };
                match result {
                    Ok(head) => return Ok((stream, addr, head)),
                    // A pooled connection the backend had closed: an idempotent request goes
                    // once more on a new one (as pingora-proxy and nginx retry).
                    Err((kind, _))
                        if reused
                            && !received
                            && kind != io::ErrorKind::TimedOut
                            && req.method.is_idempotent() =>
                    {
                        continue;
                    }
                    Err((kind, error)) => {
                        return Err((io_status(kind), format!("{addr}: {error}")))
                    }
                }
            }
        }
    }
}

/// Where a response body stands.
enum Body {
    Done,
    Length(u64),
    Chunked(Chunks),
    UntilClose,
}

impl Body {
    fn new(framing: Framing) -> Self {
        match framing {
            Framing::None | Framing::Length(0) => Body::Done,
            Framing::Length(n) => Body::Length(n),
            Framing::Chunked => Body::Chunked(Chunks::new()),
            Framing::UntilClose => Body::UntilClose,
        }
    }

    fn is_done(&self) -> bool {
        matches!(self, Body::Done)
    }

    /// How many bytes at the start of `buf` belong to the body (the rest would be the
    /// backend's next message, which it should not have sent), and how many of those are
    /// payload (not chunk framing).
    fn take(&mut self, buf: &[u8]) -> Result<(usize, usize), ()> {
        match self {
            Body::Done => Ok((0, 0)),
            Body::Length(left) => {
                let n = (*left).min(buf.len() as u64);
                *left -= n;
                if *left == 0 {
                    *self = Body::Done;
                }
                Ok((n as usize, n as usize))
            }
            Body::Chunked(chunks) => {
                let taken = chunks.advance(buf)?;
                if *chunks == Chunks::Done {
                    *self = Body::Done;
                }
                Ok(taken)
            }
            Body::UntilClose => Ok((buf.len(), buf.len())),
        }
    }
}

/// Whether the loop takes this located request: its route proxies to a plain-HTTP/1 upstream
/// and the connection is within the per-IP limit. The upstream it goes to, if so.
fn takes<'s>(at: &Located<'_, 's>, conn: &ClientConn) -> Option<&'s ProxyAction> {
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
fn upstream_request(
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

/// The status for a failed exchange with a backend: 504 for a timeout, else 502.
fn io_status(kind: io::ErrorKind) -> u16 {
    if kind == io::ErrorKind::TimedOut {
        504
    } else {
        502
    }
}

/// Sends the plain error response for `status` (the connection closes after it); the body
/// bytes sent.
async fn error_response(
    conn: &mut ClientConn,
    out: &mut Vec<u8>,
    status: u16,
    request_id: &[u8],
    head_request: bool,
    send: Option<Duration>,
) -> usize {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let body = format!("{status} {reason}\n");
    out.clear();
    own_response(
        out,
        status,
        None,
        body.as_bytes(),
        request_id,
        true,
        head_request,
    );
    let _ = write_out(conn, out, send).await;
    if head_request {
        0
    } else {
        body.len()
    }
}

/// The request's `send_timeout_ms`.
fn send_timeout(ctx: &Ctx) -> Option<Duration> {
    ctx.snapshot.as_ref().map(|s| s.policy.send_timeout)
}

/// Writes `out` to the client and flushes it, each write within `limit` (`send_timeout_ms`).
async fn write_out(conn: &mut ClientConn, out: &[u8], limit: Option<Duration>) -> io::Result<()> {
    within(limit, conn.write_all(out)).await?;
    within(limit, conn.flush()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_finds_the_empty_line() {
        assert_eq!(
            head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest", 0),
            Some(27)
        );
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\nrest", 0), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0), None);
    }

    #[test]
    fn chunked_framing_ends_after_the_trailer_however_it_is_split() {
        let body = b"5;ext=1\r\nhello\r\n006 \r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let end = body.len() - 4;
        let mut c = Chunks::new();
        assert_eq!(c.advance(body), Ok((end, 11)));
        assert_eq!(c, Chunks::Done);
        for cut in 1..end {
            let mut c = Chunks::new();
            let (a, pa) = c.advance(&body[..cut]).expect("valid framing");
            assert_eq!(a, cut, "all of a partial body is body");
            let (b, pb) = c.advance(&body[cut..]).expect("valid framing");
            assert_eq!((a + b, pa + pb), (end, 11), "split at {cut}");
            assert_eq!(c, Chunks::Done);
        }
    }

    #[test]
    fn chunked_framing_is_strict() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n",
            b"1\r2\r\nx\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\n",
            b"5;a\x01b\r\n",
            b"1234567890abcdef0\r\n",
            b"0\r\nx: 1\n\r\n",
        ] {
            let mut c = Chunks::new();
            assert!(
                c.advance(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Leading zeros do not count against the length limit.
        let mut c = Chunks::new();
        assert!(c.advance(b"00000000000000000005\r\nhello\r\n").is_ok());
    }

    #[test]
    fn response_lengths_are_digits_and_agree() {
        assert_eq!(content_length(b" 42 "), Some(42));
        assert_eq!(content_length(b"2, 2"), Some(2), "a list of one length");
        assert_eq!(content_length(b"2, 3"), None);
        assert_eq!(content_length(b"+5"), None);
        assert_eq!(content_length(b""), None);
        let head = |raw: &[u8], head_request| {
            with_response(raw, |r| response_head(r, raw.len(), head_request)).expect("parses")
        };
        let both = head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        )
        .expect("framed");
        assert_eq!(both.framing, Framing::Chunked);
        assert!(
            !both.keepalive,
            "a backend sending both lengths is not reused"
        );
        assert!(head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            false
        )
        .is_none());
        let head_resp =
            head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).expect("framed");
        assert_eq!(head_resp.framing, Framing::None);
        assert!(head_resp.keepalive);
        let old = head(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", false).expect("framed");
        assert!(!old.keepalive, "HTTP/1.0 without keep-alive closes");
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..100 {
            many.extend_from_slice(format!("Set-Cookie: c{i}=1\r\n").as_bytes());
        }
        many.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        assert_eq!(
            head(&many, false).expect("framed").framing,
            Framing::Length(0)
        );
    }

    #[test]
    fn statuses_outside_100_to_599_are_refused() {
        for (raw, ok) in [
            (&b"HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\n"[..], false),
            (b"HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\n", false),
            (b"HTTP/1.1 599 Odd\r\nContent-Length: 2\r\n\r\n", true),
        ] {
            let head = with_response(raw, |r| response_head(r, raw.len(), false)).expect("parses");
            assert_eq!(head.is_some(), ok, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn lenient_backend_fields_go_out_clean() {
        let raw = b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Type : text/plain\r\nConnection: x-secret\r\nX-Secret: 1\r\nContent-Length: 0\r\n\r\n";
        let edits = ResponseEdits {
            remove: &[],
            add: &[],
            hsts: None,
        };
        let mut out = Vec::new();
        with_response(raw, |r| {
            client_response_head(&mut out, r, Framing::Length(0), &edits, b"id", false)
        })
        .expect("pingora-core's parser takes these too");
        let text = String::from_utf8(out).expect("text");
        assert!(text.contains("X-Folded: a   b\r\n"), "{text}");
        assert!(text.contains("Content-Type: text/plain\r\n"), "{text}");
        assert!(!text.to_ascii_lowercase().contains("x-secret"), "{text}");
        assert!(text.contains("Content-Length: 0\r\n"), "{text}");
    }

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
