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
//! What it takes (`request`, checked before anything with a side effect, such as a rate-limit
//! token): HTTP/1.1, a method other than CONNECT, an origin-form target of plain characters,
//! exactly one Host, no body (`Content-Length: 0` or none, no Transfer-Encoding), no Expect, no
//! Upgrade, a Connection header naming only `close` or `keep-alive`, at most 64 headers in
//! 16 KiB, a known site and route proxying to a plain-HTTP upstream, and a connection under the
//! per-IP limit. Anything else, including a header it cannot parse, is handed to pingora-proxy
//! with the bytes read so far replayed (`ClientConn::replay`); pingora-proxy then serves the
//! rest of that connection.
//!
//! The exchange with the backend is `forward`'s, its response's checks and headers
//! `response`'s, the body's framing `body`'s. Backend connections come from a per-thread pool
//! (`route::pool`). Header names it adds are lowercase, as pingora writes them.

mod body;
mod forward;
mod request;
mod response;

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::{HeaderValue, Method};
use pingora::protocols::tls::SslDigest;
use pingora::protocols::{GetSocketDigest, Ssl};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use self::request::{request, takes, Field, Request};
use self::response::{head_end, own_response};
use super::conn::ClientConn;
use super::ctx::Ctx;
use super::phases::{Located, Peer};
use super::{access, Proxy};
use crate::policy::ip::canonical;
use crate::policy::Denial;
use crate::route::router::ProxyAction;
use crate::snapshot::Snapshot;
use crate::tls::resolver::ConnInfo;

/// Request header bytes read before the request is handed to pingora-proxy.
const MAX_HEAD: usize = 16 * 1024;
/// Headers of a request or response parsed on the stack.
const MAX_HEADERS: usize = 64;
/// Backend read buffer: the body is copied through it.
const UPSTREAM_BUF: usize = 32 * 1024;

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
            let end = match self.read_head(&mut conn, &mut input, idle).await {
                Some(Some(end)) => end,
                Some(None) => return self.hand_over(conn, input),
                None => return Served::Closed,
            };
            let (keep, keepalive) = {
                // Left uninitialised: httparse fills what it parses (2 KiB not zeroed per request).
                let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
                let mut parsed = httparse::Request::new(&mut []);
                let complete = matches!(
                    parsed.parse_with_uninit_headers(&input[..end], &mut headers),
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
    /// done (closed, timed out).
    ///
    /// Shutdown does not cut this wait, as in pingora-proxy: the watch fires when the listeners
    /// stop (a binary upgrade hands them over), and a connection accepted just before, or a
    /// keep-alive client's next request during the grace period, is still answered, with
    /// `Connection: close`. What is still idle when the grace period ends goes with the runtime.
    async fn read_head(
        &self,
        conn: &mut ClientConn,
        input: &mut BytesMut,
        idle: Option<Option<Duration>>,
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
            match within(limit, conn.read_buf(input)).await {
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
