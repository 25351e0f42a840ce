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
use http::Method;
use pingora::protocols::tls::SslDigest;
use pingora::protocols::{GetSocketDigest, Ssl};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::conn::ClientConn;
use super::{access, forwarded_for, lowercase, proxy_action, Ctx, Proxy, ReqView, ResponseEdits};
use crate::policy::Denial;
use crate::route::pool;
use crate::route::router::{strip_port, ProxyAction};
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
    peer: SocketAddr,
    listener_port: Option<u16>,
    tls: Option<Arc<SslDigest>>,
    sni: Option<Arc<str>>,
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
        Self {
            peer: inet(digest.as_ref().and_then(|d| d.peer_addr()))
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            listener_port: inet(digest.as_ref().and_then(|d| d.local_addr())).map(|a| a.port()),
            tls,
            sni,
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
    /// Keep-Alive, Proxy-Connection, TE, Trailer: hop-by-hop, not forwarded.
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
        7 if is("trailer") => Field::HopByHop,
        9 if is("x-real-ip") => Field::Replaced,
        10 if is("connection") => Field::Connection,
        10 if is("keep-alive") => Field::HopByHop,
        10 if is("user-agent") => Field::UserAgent,
        12 if is("x-request-id") => Field::XRequestId,
        14 if is("content-length") => Field::ContentLength,
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
    let mut req = Req {
        method: Method::from_bytes(method_str.as_bytes()).ok()?,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunks {
    Size { value: u64, digits: u8, ext: bool },
    Data(u64),
    DataEnd,
    Trailer { line: usize },
    Done,
}

impl Chunks {
    fn new() -> Self {
        Chunks::Size {
            value: 0,
            digits: 0,
            ext: false,
        }
    }

    /// Consumes the part of `buf` that belongs to the body; `Err` on a framing error.
    fn advance(&mut self, buf: &[u8]) -> Result<usize, ()> {
        let mut i = 0;
        while i < buf.len() {
            match self {
                Chunks::Data(left) => {
                    let take = (*left).min((buf.len() - i) as u64);
                    i += take as usize;
                    *left -= take;
                    if *left == 0 {
                        *self = Chunks::DataEnd;
                    }
                }
                Chunks::Size { value, digits, ext } => {
                    let b = buf[i];
                    i += 1;
                    match b {
                        b'\n' if *digits == 0 => return Err(()),
                        b'\n' if *value == 0 => *self = Chunks::Trailer { line: 0 },
                        b'\n' => *self = Chunks::Data(*value),
                        b'\r' | b';' | b' ' | b'\t' => *ext = true,
                        _ if *ext => {}
                        _ => {
                            let d = (b as char).to_digit(16).ok_or(())?;
                            if *digits >= 15 {
                                return Err(());
                            }
                            *value = *value * 16 + u64::from(d);
                            *digits += 1;
                        }
                    }
                }
                Chunks::DataEnd => {
                    let b = buf[i];
                    i += 1;
                    match b {
                        b'\r' => {}
                        b'\n' => *self = Chunks::new(),
                        _ => return Err(()),
                    }
                }
                Chunks::Trailer { line } => {
                    let b = buf[i];
                    i += 1;
                    match b {
                        b'\n' if *line == 0 => {
                            *self = Chunks::Done;
                            return Ok(i);
                        }
                        b'\n' => *line = 0,
                        b'\r' => {}
                        _ => *line += 1,
                    }
                }
                Chunks::Done => return Ok(i),
            }
        }
        Ok(i)
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

/// Reads one response header (skipping interim 1xx ones) into `up`.
async fn read_response_head(
    stream: &mut TcpStream,
    up: &mut BytesMut,
    read_timeout: Option<Duration>,
    head_request: bool,
) -> Result<ResponseHead, (io::ErrorKind, String)> {
    let mut scanned = 0;
    loop {
        if let Some(end) = head_end(up, scanned) {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&up[..end]) {
                Ok(httparse::Status::Complete(n)) if n == end => {}
                Ok(_) => return Err((io::ErrorKind::InvalidData, "bad response header".into())),
                Err(e) => {
                    return Err((
                        io::ErrorKind::InvalidData,
                        format!("bad response header: {e}"),
                    ))
                }
            }
            let status = resp.code.unwrap_or(0);
            if (100..200).contains(&status) && status != 101 {
                up.advance(end);
                scanned = 0;
                continue;
            }
            if status == 101 {
                return Err((
                    io::ErrorKind::InvalidData,
                    "101 to a request without Upgrade".into(),
                ));
            }
            return response_head(&resp, end, head_request).ok_or((
                io::ErrorKind::InvalidData,
                "conflicting response framing".into(),
            ));
        }
        scanned = up.len().saturating_sub(2);
        if up.len() >= MAX_RESPONSE_HEAD {
            return Err((
                io::ErrorKind::InvalidData,
                "response header too large".into(),
            ));
        }
        up.reserve(UPSTREAM_BUF);
        match within(read_timeout, stream.read_buf(up)).await {
            Ok(0) => {
                return Err((
                    io::ErrorKind::UnexpectedEof,
                    "backend closed the connection before a response".into(),
                ))
            }
            Ok(_) => {}
            Err(e) => return Err((e.kind(), format!("reading the response: {e}"))),
        }
    }
}

/// The framing and keep-alive of a parsed response; `None` on conflicting lengths.
fn response_head(
    resp: &httparse::Response<'_, '_>,
    len: usize,
    head_request: bool,
) -> Option<ResponseHead> {
    let status = resp.code.unwrap_or(0);
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut close = resp.version != Some(1);
    for h in resp.headers.iter() {
        match field(h.name) {
            Field::ContentLength => {
                let v: u64 = std::str::from_utf8(h.value).ok()?.trim().parse().ok()?;
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
    let framing = if head_request || status == 204 || status == 304 {
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
    let status = resp.code.unwrap_or(502);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa3(status).as_slice());
    out.push(b' ');
    let reason = resp
        .reason
        .filter(|r| !r.is_empty())
        .or_else(|| http::StatusCode::from_u16(status).ok()?.canonical_reason())
        .unwrap_or("");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in resp.headers.iter() {
        match field(h.name) {
            Field::Connection | Field::HopByHop | Field::Upgrade | Field::XRequestId => continue,
            Field::ContentLength if framing == Framing::Chunked => continue,
            _ => {}
        }
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
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
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
    if let Some((name, value)) = extra {
        push_field(out, name.as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if !head_request {
        out.extend_from_slice(body);
    }
}

/// Per-connection buffers, reused by every request.
struct Buffers {
    /// What the client sent and the loop has not used yet.
    input: BytesMut,
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
        let mut bufs = Buffers {
            input: BytesMut::with_capacity(4096),
            out: Vec::with_capacity(1024),
            up: BytesMut::new(),
        };
        // The first request's header is timed by the connection's clock; later ones wait for
        // their first byte at most the keep-alive timeout.
        let mut idle: Option<Option<Duration>> = None;
        loop {
            let end = match self
                .read_head(&mut conn, &mut bufs.input, idle, &mut shutdown)
                .await
            {
                Some(Some(end)) => end,
                Some(None) => return self.hand_over(conn, bufs.input),
                None => return Served::Closed,
            };
            let (keep, keepalive) = {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut parsed = httparse::Request::new(&mut headers);
                let complete = matches!(
                    parsed.parse(&bufs.input[..end]),
                    Ok(httparse::Status::Complete(n)) if n == end
                );
                let mut fields = [Field::Other; MAX_HEADERS];
                let req = complete.then(|| request(&parsed, &mut fields)).flatten();
                let snapshot = self.state.load_full();
                let Some((req, route)) =
                    req.and_then(|r| taken(&snapshot, &r, &conn).map(|route| (r, route)))
                else {
                    return self.hand_over(conn, bufs.input);
                };
                let keepalive = snapshot.policy.keepalive_timeout_seconds;
                let outcome = self
                    .one(
                        &mut conn,
                        &facts,
                        &req,
                        &parsed,
                        &fields,
                        snapshot,
                        route,
                        &mut bufs.out,
                        &mut bufs.up,
                    )
                    .await;
                (outcome, keepalive)
            };
            bufs.input.advance(end);
            if !keep || *shutdown.borrow() {
                let _ = conn.shutdown().await;
                return Served::Closed;
            }
            conn.request_done();
            idle = Some((keepalive > 0).then(|| Duration::from_secs(keepalive)));
            if bufs.input.is_empty() {
                // An idle connection holds no backend buffer (most of what it would keep).
                bufs.up = BytesMut::new();
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
            let read = match idle {
                Some(limit) if input.is_empty() => {
                    let read = within(limit, conn.read_buf(input));
                    tokio::select! {
                        biased;
                        r = read => r,
                        Ok(()) = shutdown.changed() => return None,
                    }
                }
                _ => conn.read_buf(input).await,
            };
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Serves one request the loop takes; returns whether the connection stays open.
    #[allow(clippy::too_many_arguments)]
    async fn one(
        &self,
        conn: &mut ClientConn,
        facts: &ConnFacts,
        req: &Req<'_>,
        parsed: &httparse::Request<'_, '_>,
        fields: &[Field; MAX_HEADERS],
        snapshot: Arc<Snapshot>,
        route: (usize, usize),
        out: &mut Vec<u8>,
        up: &mut BytesMut,
    ) -> bool {
        conn.header_done();
        let mut ctx = Ctx::new();
        self.identify(
            &mut ctx,
            &snapshot.policy,
            facts.peer,
            req.forwarded_for,
            req.request_id,
            facts.sni.clone(),
        );
        let tls = facts.tls.is_some();
        let view = ReqView {
            host: Some(req.host),
            method: &req.method,
            path: req.path,
            path_and_query: req.target,
            header_bytes: req.header_bytes,
            content_length: None,
            tls,
        };
        let denial = self.decide(&view, &mut ctx, &snapshot);
        ctx.snapshot = Some(snapshot.clone());
        let head_request = req.method == Method::HEAD;
        let outcome = match denial {
            Some(denial) => {
                ctx.decision = Some(denial.rule.clone());
                self.deny(conn, out, &denial, &ctx, req.close, head_request)
                    .await
            }
            None => match ctx
                .route
                .filter(|r| *r == route)
                .and_then(|r| proxy_action(&snapshot, r))
            {
                Some(action) => {
                    self.proxy(conn, facts, req, parsed, fields, action, &mut ctx, out, up)
                        .await
                }
                // The route decide() found is the one checked before: only a reload between
                // the two lookups could differ, and the snapshot is the same Arc.
                None => Outcome {
                    status: 0,
                    bytes_out: 0,
                    keep: false,
                    error: Some("route changed under the request".into()),
                },
            },
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
        let sent = write_out(conn, out).await;
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
        req: &Req<'_>,
        parsed: &httparse::Request<'_, '_>,
        fields: &[Field; MAX_HEADERS],
        action: &ProxyAction,
        ctx: &mut Ctx,
        out: &mut Vec<u8>,
        up: &mut BytesMut,
    ) -> Outcome {
        let head_request = req.method == Method::HEAD;
        let options = action.upstream.options();
        let (mut stream, addr, head) = match self
            .exchange(req, parsed, fields, action, ctx, facts, out, up)
            .await
        {
            Ok(ok) => ok,
            Err((status, error)) => {
                let reason = http::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("Error");
                let body = format!("{status} {reason}\n");
                out.clear();
                let id = ctx.request_id.as_bytes();
                own_response(out, status, None, body.as_bytes(), id, true, head_request);
                let _ = write_out(conn, out).await;
                return Outcome {
                    status,
                    bytes_out: if head_request { 0 } else { body.len() },
                    keep: false,
                    error: Some(error),
                };
            }
        };
        ctx.upstream_status = Some(head.status);
        // The response header for the client, then the body as it comes.
        let close = req.close || head.framing == Framing::UntilClose;
        out.clear();
        {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            // Parsed once already by read_response_head: the same header, the same result.
            let _ = resp.parse(&up[..head.len]);
            let edits = ResponseEdits::of(ctx, facts.tls.is_some());
            let id = ctx.request_id.as_bytes();
            client_response_head(out, &resp, head.framing, &edits, id, close);
        }
        up.advance(head.len);
        let mut body = Body::new(head.framing);
        let cut = |status, sent, error: String| Outcome {
            status,
            bytes_out: sent,
            keep: false,
            error: Some(error),
        };
        let Ok(first) = body.take(up) else {
            return cut(
                head.status,
                0,
                "bad chunked framing from the backend".into(),
            );
        };
        let sent = if first <= COALESCE {
            out.extend_from_slice(&up[..first]);
            write_out(conn, out).await
        } else {
            match conn.write_all(out).await {
                Ok(()) => write_out(conn, &up[..first]).await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = sent {
            return cut(head.status, 0, format!("writing the response: {e}"));
        }
        let mut sent = first;
        let mut extra = up.len() > first;
        up.clear();
        while !body.is_done() {
            if up.capacity() < UPSTREAM_BUF {
                up.reserve(UPSTREAM_BUF);
            }
            match within(options.read_timeout, stream.read_buf(up)).await {
                Ok(0) if head.framing == Framing::UntilClose => break,
                Ok(0) => return cut(head.status, sent, "backend closed mid-body".into()),
                Ok(_) => {}
                Err(e) => return cut(head.status, sent, format!("reading the response body: {e}")),
            }
            let Ok(n) = body.take(up) else {
                return cut(
                    head.status,
                    sent,
                    "bad chunked framing from the backend".into(),
                );
            };
            extra |= up.len() > n;
            if let Err(e) = write_out(conn, &up[..n]).await {
                return cut(head.status, sent, format!("writing the response: {e}"));
            }
            sent += n;
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
    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        req: &Req<'_>,
        parsed: &httparse::Request<'_, '_>,
        fields: &[Field; MAX_HEADERS],
        action: &ProxyAction,
        ctx: &mut Ctx,
        facts: &ConnFacts,
        out: &mut Vec<u8>,
        up: &mut BytesMut,
    ) -> Result<(TcpStream, SocketAddr, ResponseHead), (u16, String)> {
        let options = action.upstream.options();
        let head_request = req.method == Method::HEAD;
        let status_of = |kind: io::ErrorKind| {
            if kind == io::ErrorKind::TimedOut {
                504
            } else {
                502
            }
        };
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
            upstream_request(out, req, parsed, fields, action, ctx, facts);
            let mut pooled = pool::take(addr, options.idle_timeout);
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
                            return Err((status_of(e.kind()), format!("connect to {addr}: {e}")));
                        }
                    },
                };
                up.clear();
                let sent = within(options.write_timeout, stream.write_all(out)).await;
                let result = match sent {
                    Ok(()) => {
                        read_response_head(&mut stream, up, options.read_timeout, head_request)
                            .await
                    }
                    Err(e) => Err((e.kind(), format!("writing the request: {e}"))),
                };
                match result {
                    Ok(head) => return Ok((stream, addr, head)),
                    // A pooled connection the backend closed: once more on a new one.
                    Err((kind, _))
                        if reused && up.is_empty() && kind != io::ErrorKind::TimedOut =>
                    {
                        continue;
                    }
                    Err((kind, error)) => {
                        return Err((status_of(kind), format!("{addr}: {error}")))
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
    /// backend's next message, which it should not have sent).
    fn take(&mut self, buf: &[u8]) -> Result<usize, ()> {
        match self {
            Body::Done => Ok(0),
            Body::Length(left) => {
                let n = (*left).min(buf.len() as u64);
                *left -= n;
                if *left == 0 {
                    *self = Body::Done;
                }
                Ok(n as usize)
            }
            Body::Chunked(chunks) => {
                let n = chunks.advance(buf)?;
                if *chunks == Chunks::Done {
                    *self = Body::Done;
                }
                Ok(n)
            }
            Body::UntilClose => Ok(buf.len()),
        }
    }
}

/// Whether the loop takes this request: a site and route proxying to a plain-HTTP/1 upstream,
/// on a connection within the per-IP limit. Lookups only: the policy runs later.
fn taken(snapshot: &Snapshot, req: &Req<'_>, conn: &ClientConn) -> Option<(usize, usize)> {
    if conn.over_limit() {
        return None;
    }
    let host = lowercase(strip_port(req.host));
    let site_index = snapshot.router.find(&host)?;
    let site = snapshot.router.site_at(site_index)?;
    let route = site.find_route(req.path, &req.method)?;
    let action = proxy_action(snapshot, (site_index, route))?;
    (!action.upstream.is_tls()).then_some((site_index, route))
}

/// Writes the request for the backend into `out`: the client's header less hop-by-hop and
/// forwarding fields, the path rewritten, the Host overridden, then menshen's forwarding fields.
fn upstream_request(
    out: &mut Vec<u8>,
    req: &Req<'_>,
    parsed: &httparse::Request<'_, '_>,
    fields: &[Field; MAX_HEADERS],
    action: &ProxyAction,
    ctx: &Ctx,
    facts: &ConnFacts,
) {
    out.clear();
    out.extend_from_slice(req.method_str.as_bytes());
    out.push(b' ');
    match action.rewrite.apply(ctx.route_prefix(), req.target) {
        Some(path) => out.extend_from_slice(path.as_bytes()),
        None => out.extend_from_slice(req.target.as_bytes()),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (h, f) in parsed.headers.iter().zip(fields) {
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
        let list = forwarded_for(req.forwarded_for, facts.peer.ip(), client_ip);
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

/// Writes `out` to the client and flushes it.
async fn write_out(conn: &mut ClientConn, out: &[u8]) -> io::Result<()> {
    conn.write_all(out).await?;
    conn.flush().await
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
    fn chunked_framing_ends_after_the_trailer() {
        let body = b"5;ext=1\r\nhello\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let mut c = Chunks::new();
        assert_eq!(c.advance(body), Ok(body.len() - 4));
        assert_eq!(c, Chunks::Done);
        // Byte by byte: the same end.
        let mut c = Chunks::new();
        let mut used = 0;
        for b in body.chunks(1) {
            used += c.advance(b).expect("valid framing");
            if c == Chunks::Done {
                break;
            }
        }
        assert_eq!(used, body.len() - 4);
        assert!(Chunks::new().advance(b"zz\r\n").is_err());
        assert!(Chunks::new().advance(b"\r\n").is_err());
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
