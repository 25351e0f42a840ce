//! What menshen keeps per client connection, which pingora 0.9 has no hooks for: a deadline for
//! request headers (`policy.header_read_timeout_ms`) and the per-IP connection count
//! (`policy.max_connections_per_ip`).
//!
//! pingora reads every request header with a per-read timeout only (60 s, or the keep-alive
//! timeout on a reused connection), so a client trickling one byte a minute could hold a
//! connection for as long as it liked. [`ConnGate`] wraps the HTTP application: at each new
//! connection it reads the PROXY header where the listener sits behind an L4 balancer, runs the
//! TLS handshake where the listener terminates TLS ([`TlsTerminator`]), counts the client (the
//! socket peer, or the PROXY protocol address; connections from trusted proxies are not counted)
//! and puts the stream in a [`ClientConn`], which holds the count for the connection's life and
//! runs the header clock. The clock runs from the connection's accept (PROXY header and TLS
//! handshake included) for its first request and from the first byte of each later one; when it
//! runs out, the connection is closed. The proxy stops the clock once the header is parsed
//! (`request_filter`) and sets it waiting for the next request when the request ends (`logging`);
//! the wait between requests is the keep-alive timeout's business.
//!
//! The clock only arms a timer when a header read would block: usually once per connection (the
//! first request's read waits for the client), rarely on keep-alive requests, whose header tends
//! to arrive in the read that wakes the connection. Idle time before a connection's first byte
//! counts, as with nginx's `client_header_timeout`: an unused browser preconnect is closed after
//! the limit. This relies on pingora defaults menshen keeps: no h2c, no HTTP/1 pipelining, and no
//! reuse of a connection whose request body was not read to the end.
//!
//! A connection over the per-IP limit is still served its first request, as a logged 429 that
//! closes it; an HTTP/2 connection over the limit is closed at once. HTTP/2 connections go to
//! the HTTP/2 engine (`h2`), whose handshake (preface and SETTINGS) must arrive within the same
//! header clock; their streams have no per-request clock (the h2 crate reads frames, bounded
//! by its header-list limit).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::ServerApp;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use std::net::IpAddr;

use super::h1::Served;
use super::Proxy;
use crate::policy::conn_limit::ConnGuard;
use crate::policy::ip::canonical;
use crate::policy::proxy_protocol::read_header;
use crate::snapshot::SharedSnapshot;
use crate::tls::listener::TlsTerminator;

/// Between requests: no deadline; the next byte starts the clock.
const WAITING: u8 = 0;
/// Reading a request header: it must be complete by `started + limit`.
const HEADER: u8 = 1;
/// The header is in: body reads have their own timeout.
const DONE: u8 = 2;

/// A client connection's stream, with its place in the per-IP count and its header clock.
pub struct ClientConn {
    inner: Stream,
    limit: Duration,
    /// This connection's place in the per-IP count, given back when the connection ends.
    _counted: Option<ConnGuard>,
    /// The client already held `max_connections_per_ip` connections when this one arrived.
    over_limit: bool,
    /// Written by the proxy phases through a shared reference to the session's stream.
    phase: AtomicU8,
    started: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Bytes already read off the stream that the next reads return first (what the HTTP/1
    /// loop read before handing the connection to pingora-proxy).
    replay: Bytes,
}

impl std::fmt::Debug for ClientConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConn")
            .field("inner", &self.inner)
            .field("limit", &self.limit)
            .field("phase", &self.phase.load(Ordering::Relaxed))
            .finish()
    }
}

impl ClientConn {
    /// Wraps a new connection: its first request header is due `limit` from now. `clock: false`
    /// for HTTP/2, which has no request headers on the wire to time.
    fn new(
        inner: Stream,
        limit: Duration,
        counted: Option<ConnGuard>,
        over_limit: bool,
        clock: bool,
    ) -> Self {
        let started = accepted_at(&inner);
        Self {
            inner,
            limit,
            _counted: counted,
            over_limit,
            phase: AtomicU8::new(if clock { HEADER } else { DONE }),
            started,
            sleep: None,
            replay: Bytes::new(),
        }
    }

    /// Whether the client was over `max_connections_per_ip` when this connection arrived.
    pub fn over_limit(&self) -> bool {
        self.over_limit
    }

    /// The request header is parsed: stop the clock.
    pub fn header_done(&self) {
        self.phase.store(DONE, Ordering::Relaxed);
    }

    /// A request header has begun (its first bytes are already read): its clock runs from now.
    pub fn header_started(&mut self) {
        self.started = Instant::now();
        self.phase.store(HEADER, Ordering::Relaxed);
    }

    /// The request is over: the next byte that arrives starts the next header's clock.
    pub fn request_done(&self) {
        self.phase.store(WAITING, Ordering::Relaxed);
    }

    /// Has the next reads return `bytes` before anything more from the client.
    pub(crate) fn replay(&mut self, bytes: Bytes) {
        self.replay = bytes;
    }

    /// The `ClientConn` behind a pingora stream, if it is one.
    pub fn of(stream: &Stream) -> Option<&ClientConn> {
        stream.as_any().downcast_ref::<ClientConn>()
    }

    fn timed_out(&self) -> std::io::Error {
        crate::observe::metrics::metrics()
            .denials
            .with_label_values(&["header_timeout"])
            .inc();
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "request header not complete within header_read_timeout_ms ({} ms)",
                self.limit.as_millis()
            ),
        )
    }
}

/// When the connection was accepted (its TCP layer's timestamp), as an `Instant`: the first
/// request's clock includes the TLS handshake and any PROXY header.
fn accepted_at(stream: &Stream) -> Instant {
    let now = Instant::now();
    let age = stream
        .get_timing_digest()
        .first()
        .and_then(|t| t.as_ref())
        .and_then(|t| SystemTime::now().duration_since(t.established_ts).ok());
    age.and_then(|age| now.checked_sub(age)).unwrap_or(now)
}

impl AsyncRead for ClientConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let phase = this.phase.load(Ordering::Relaxed);
        if phase == DONE {
            // A timer armed for this header is not needed any more: deregister it.
            this.sleep = None;
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if phase == WAITING => {
                if buf.filled().len() > before {
                    this.started = Instant::now();
                    this.phase.store(HEADER, Ordering::Relaxed);
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Ok(())) => {
                // More of a header that did not fit in one read: still in time?
                if Instant::now() >= this.started + this.limit {
                    return Poll::Ready(Err(this.timed_out()));
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending if phase == WAITING => return Poll::Pending,
            Poll::Pending => {}
        }
        // A header read that would block: sleep until the deadline beside it.
        let deadline = this.started + this.limit;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(this.timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for ClientConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for ClientConn {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for ClientConn {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for ClientConn {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for ClientConn {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for ClientConn {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for ClientConn {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for ClientConn {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

/// The HTTP application with a [`ClientConn`] around every connection; HTTP/1 connections
/// start in menshen's own loop (`h1`), which hands them to pingora-proxy at the first request
/// for an upstream that offers HTTP/2; HTTP/2 connections go to menshen's HTTP/2 engine
/// (`h2`).
pub struct ConnGate<A> {
    inner: Arc<A>,
    h1: Proxy,
    state: SharedSnapshot,
    /// The listeners sit behind an L4 balancer that sends a PROXY header.
    proxy_protocol: bool,
    /// Handshakes for connections that arrive on TLS listeners.
    tls: Option<Arc<TlsTerminator>>,
}

impl<A> ConnGate<A> {
    /// Wraps `inner`; each new connection takes the limits of the snapshot serving then.
    /// `proxy_protocol`: read a PROXY header off each connection first; `tls`: then terminate
    /// TLS (the service's listeners are TLS listeners).
    pub fn new(
        inner: A,
        h1: Proxy,
        state: SharedSnapshot,
        proxy_protocol: bool,
        tls: Option<Arc<TlsTerminator>>,
    ) -> Self {
        Self {
            inner: Arc::new(inner),
            h1,
            state,
            proxy_protocol,
            tls,
        }
    }

    /// What comes before HTTP on a new connection: its PROXY header, its TLS handshake.
    async fn open(&self, stream: Stream) -> pingora::Result<Stream> {
        if !self.proxy_protocol && self.tls.is_none() {
            return Ok(stream);
        }
        let Ok(mut l4) = stream.into_any().downcast::<L4Stream>() else {
            return pingora::Error::e_explain(
                pingora::ErrorType::InternalError,
                "a listener stream that is not TCP",
            );
        };
        if self.proxy_protocol {
            read_header(&mut l4).await?;
        }
        match &self.tls {
            Some(tls) => tls.accept(*l4).await,
            None => Ok(l4),
        }
    }
}

/// The client of a new connection: the PROXY protocol address where the listener expects one
/// (read into the socket digest), else the socket peer.
fn client_ip(stream: &Stream) -> Option<IpAddr> {
    let digest = stream.get_socket_digest()?;
    let addr = digest.peer_addr()?.as_inet()?;
    Some(canonical(addr.ip()))
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ConnGate<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if ClientConn::of(&stream).is_some() {
            return self.inner.process_new(stream, shutdown).await;
        }
        // The header clock starts at the accept: the PROXY header and the handshake count.
        let deadline = accepted_at(&stream) + self.state.load().policy.header_read_timeout;
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().cloned());
        let stream = match tokio::time::timeout_at(deadline, self.open(stream)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                // Refused or failed handshakes; a peer that leaves before its hello is not one.
                if e.etype() == &pingora::ErrorType::TLSHandshakeFailure {
                    crate::observe::metrics::metrics()
                        .tls_handshake_failures
                        .inc();
                }
                tracing::debug!(peer = ?peer, "connection dropped before its first request: {e}");
                return None;
            }
            Err(_) => {
                crate::observe::metrics::metrics()
                    .denials
                    .with_label_values(&["header_timeout"])
                    .inc();
                tracing::debug!(peer = ?peer, "connection dropped: no handshake or PROXY header within header_read_timeout_ms");
                return None;
            }
        };
        // h2 only by ALPN: plaintext h2 (h2c) is not enabled on these listeners.
        let h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
        let snapshot = self.state.load();
        let policy = &snapshot.policy;
        let max = policy.max_connections_per_ip;
        let (counted, over_limit) = match client_ip(&stream) {
            Some(ip) if max > 0 && !policy.trusted_proxies.contains(ip) => {
                match policy.connections.acquire(ip, max) {
                    Some(guard) => (Some(guard), false),
                    None => (None, true),
                }
            }
            _ => (None, false),
        };
        if over_limit && h2 {
            crate::observe::metrics::metrics()
                .denials
                .with_label_values(&["max_connections_per_ip"])
                .inc();
            return None;
        }
        let limit = policy.header_read_timeout;
        drop(snapshot);
        let conn = ClientConn::new(stream, limit, counted, over_limit, !h2);
        if h2 {
            self.h1.serve_h2(conn, shutdown).await;
            return None;
        }
        match self.h1.serve_h1(conn, shutdown).await {
            Served::Closed => None,
            Served::HandOver(conn) => self.inner.process_new(Box::new(conn), shutdown).await,
        }
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
