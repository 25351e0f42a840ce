//! menshen's HTTP/1 engine: every HTTP/1.0 and 1.1 request a client sends, proxied to HTTP/1
//! or HTTP/2 backends (`to_h2`), answered from a route or refused.
//!
//! Why its own and not pingora-proxy: pingora-proxy's per-request machinery (its session, the
//! two channels and task join of `proxy_1to1`, header clones and sanitising) and pingora-core's
//! connection pool cost about 7 µs of a keep-alive request that nginx serves in 12-14
//! (docs/performance.md). This engine reads the request head into one buffer, parses it in
//! place (httparse), runs the phases every engine runs (`identify`, `decide`, `pick_backend`,
//! `connect_failed`, the forwarded headers, `ResponseEdits`, `finish`), writes the upstream
//! request straight from the parsed head, and copies the response back with its own framing.
//!
//! A request's way through it: `read_head` (one head, within the header clock and the size
//! limits), `request` (framing, Connection, the canonical target and Host; malformed requests
//! get 400 and are never autocorrected), `serve` (policy, then the route's answer or the
//! exchange), `upload` (the request body), `forward` (backend, retries), `response` (the heads
//! the client gets), `relay` (the response body) or `tunnel` (after `101 Switching
//! Protocols`). Its own answers are `own`'s. HTTP/1 syntax both engines write and read is
//! `proxy::http1`'s; backend connections come from a per-thread pool (`route::pool`).

mod cached;
mod encoded;
mod forward;
mod from_h2;
mod own;
mod relay;
mod request;
mod response;
mod serve;
mod to_h2;
mod tunnel;
mod upload;

use std::io;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use self::serve::Next;
use super::conn::{ClientConn, ConnFacts};
use super::ctx::Ctx;
use super::http1::{head_end, MAX_HEADERS};
use super::timed::within;
use super::Proxy;

/// The canonical target of the request head `data` as this engine reads it: `None` when the
/// engine refuses it or it is not exactly one whole head (`crate::fuzz`).
pub(in crate::proxy) fn read_one_head(data: &[u8]) -> Option<String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(data) {
        Ok(httparse::Status::Complete(n)) if n == data.len() => {}
        _ => return None,
    }
    let mut classes = [crate::semantics::fields::Field::Other; MAX_HEADERS];
    let req = request::request(&parsed, &mut classes).ok()?;
    Some(req.target.as_str().to_owned())
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
    /// The status sent; `None` when none could be.
    status: Option<u16>,
    /// Request body payload bytes read.
    bytes_in: u64,
    bytes_out: usize,
    /// Keep the client connection for another request.
    keep: bool,
    error: Option<String>,
}

/// How a wait for a request head ended.
enum Head {
    /// A whole head: its length.
    Complete(usize),
    /// Longer than the policy's header and URI limits allow.
    TooLarge,
    /// The connection is done (closed, timed out).
    Closed,
}

/// After a response that keeps the connection: an idle connection holds no buffer (most of what
/// it would cost); the next request's first bytes, when they came with this one, start its
/// header clock now.
fn between_requests(conn: &mut ClientConn, input: &mut BytesMut, bufs: &mut Buffers) {
    conn.request_done();
    if input.is_empty() {
        *input = BytesMut::new();
        bufs.up = BytesMut::new();
        bufs.out = Vec::new();
    } else {
        conn.header_started();
    }
}

impl Proxy {
    /// Serves the HTTP/1 requests of `conn` until the client is done or a failure ends it.
    pub(crate) async fn serve_h1(&self, mut conn: ClientConn, shutdown: &ShutdownWatch) {
        let facts = ConnFacts::of(&conn);
        // What the client sent and the engine has not used yet.
        let mut input = BytesMut::new();
        let mut bufs = Buffers {
            out: Vec::new(),
            up: BytesMut::new(),
        };
        // The first request's header is timed by the connection's clock; later ones wait for
        // their first byte at most the keep-alive timeout (and the drain's quiet interval).
        let mut idle: Option<Idle> = None;
        // One receiver for the connection's life: a keep-alive wait watches it for a drain.
        let mut drain = shutdown.clone();
        loop {
            let max_head = self.state.load().policy.max_head_bytes;
            let wait = idle.as_ref().map(|idle| (idle, &mut drain));
            let next = match self.read_head(&mut conn, &mut input, wait, max_head).await {
                Head::Complete(end) => {
                    let head = input.split_to(end);
                    // Not boxed: an idle connection then holds the request path's state (about
                    // 1 KiB more per idle connection), but boxing it cost 1.2 µs per request
                    // (plain keep-alive A/B, 2026-12-07).
                    self.serve(&mut conn, &facts, &head, &mut input, &mut bufs, shutdown)
                        .await
                }
                Head::TooLarge => {
                    let reason = "request header too large";
                    self.refuse(&mut conn, &facts, &mut bufs.out, (None, None), 431, reason)
                        .await;
                    Next::Close
                }
                Head::Closed => return,
            };
            // A response that promised keep-alive keeps the connection even when a drain began
            // meanwhile: the client may be sending its next request already, which is answered
            // with `Connection: close` (closing here would lose it).
            let keepalive = match next {
                Next::Keep(keepalive) => keepalive,
                Next::Close => {
                    // A TLS close sends what rustls still holds first: a client that stopped
                    // reading gets no longer than a write's time limit.
                    let limit = self.state.load().policy.send_timeout;
                    let _ = tokio::time::timeout(limit, conn.shutdown()).await;
                    return;
                }
            };
            idle = Some(Idle {
                limit: keepalive,
                since: Instant::now(),
            });
            between_requests(&mut conn, &mut input, &mut bufs);
        }
    }

    /// Reads until `input` holds a whole request head. `idle`: the wait is for a keep-alive
    /// request, and ends without one after the keep-alive timeout or, once the process drains,
    /// after `DRAIN_QUIET` without a byte from the client.
    ///
    /// A drain (SIGTERM, or the old process of a binary upgrade once its listeners stop) does
    /// not cut a head that has begun, nor a keep-alive wait that is not yet quiet: a request
    /// already on its way is answered, with `Connection: close`.
    async fn read_head(
        &self,
        conn: &mut ClientConn,
        input: &mut BytesMut,
        mut idle: Option<(&Idle, &mut ShutdownWatch)>,
        max_head: usize,
    ) -> Head {
        let mut scanned = 0;
        loop {
            if let Some(end) = head_end(input, scanned) {
                return Head::Complete(end);
            }
            scanned = input.len().saturating_sub(2);
            if input.len() >= max_head {
                return Head::TooLarge;
            }
            input.reserve(4096);
            // Between requests the wait for a first byte is the keep-alive timeout's; once a
            // byte is in, the connection's header clock runs.
            let read = match idle.as_mut().filter(|_| input.is_empty()) {
                None => conn.read_buf(input).await,
                Some((idle, drain)) => keepalive_read(conn, input, idle, drain).await,
            };
            match read {
                Ok(0) | Err(_) => return Head::Closed,
                Ok(_) => {}
            }
        }
    }
}

/// Waits for the first bytes of a keep-alive request. A client that sends its next request
/// does so within the quiet interval, which is waited on the read alone; only a connection
/// quiet that long also watches for a drain (registering with the shutdown watch costs a lock
/// that every busy connection would otherwise take on every request).
async fn keepalive_read(
    conn: &mut ClientConn,
    input: &mut BytesMut,
    idle: &Idle,
    drain: &mut ShutdownWatch,
) -> io::Result<usize> {
    // `Ok(0)`: the wait is over without a request, as when the client closes.
    let first = idle
        .limit
        .map_or(DRAIN_QUIET, |limit| limit.min(DRAIN_QUIET));
    match within(Some(first), conn.read_buf(input)).await {
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
        read => return read,
    }
    let rest = match idle.limit {
        Some(limit) if limit <= first => return Ok(0),
        Some(limit) => Some(limit - first),
        None => None,
    };
    if *drain.borrow() {
        // The drain began while this client was quiet: one more quiet interval, so that a
        // request it was about to send (a slow client, a busy machine) is still answered.
        return match within(Some(DRAIN_QUIET), conn.read_buf(input)).await {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(0),
            read => read,
        };
    }
    tokio::select! {
        read = within(rest, conn.read_buf(input)) => read,
        () = quiet_in_drain(idle.since, drain) => Ok(0),
    }
}

/// How long a keep-alive connection of a draining process stays open without a byte from the
/// client before it is closed: a client that is sending its next request has begun by then,
/// and one that is not opens its next connection to the process that took over.
pub(crate) const DRAIN_QUIET: Duration = Duration::from_secs(1);

/// A connection waiting for its next request.
struct Idle {
    /// The keep-alive timeout (none: no limit).
    limit: Option<Duration>,
    /// When the last response ended.
    since: Instant,
}

/// Resolves once the process drains and the connection has been quiet for `DRAIN_QUIET` since
/// `since`; never otherwise.
async fn quiet_in_drain(since: Instant, shutdown: &mut ShutdownWatch) {
    if shutdown.wait_for(|draining| *draining).await.is_err() {
        // The server is gone without a drain: the runtime's end closes the connection.
        std::future::pending::<()>().await;
    }
    tokio::time::sleep_until((since + DRAIN_QUIET).into()).await;
}

/// The request's `send_timeout`.
fn send_timeout(ctx: &Ctx) -> Option<Duration> {
    ctx.snapshot.as_ref().map(|s| s.policy.send_timeout)
}

/// Writes `out` to the client and flushes it, each write within `limit` (`send_timeout`).
async fn write_out(conn: &mut ClientConn, out: &[u8], limit: Option<Duration>) -> io::Result<()> {
    within(limit, conn.write_all(out)).await?;
    within(limit, conn.flush()).await
}
