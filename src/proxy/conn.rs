//! What menshen keeps per client connection before and around HTTP: the PROXY header, the TLS
//! handshake, the per-IP connection count (`policy.max_connections_per_ip`) and a deadline for
//! request headers (`policy.header_read_timeout`).
//!
//! [`ConnGate`] is the application pingora's listeners hand each new connection to: it reads the
//! PROXY header where the listener sits behind an L4 balancer, runs the TLS handshake where the
//! listener terminates TLS ([`TlsTerminator`]), counts the client (the socket peer, or the PROXY
//! protocol address; connections from trusted proxies are not counted), puts the stream in a
//! [`ClientConn`], which holds the count for the connection's life and runs the header clock,
//! and gives it to the HTTP/1 engine (`h1`) or, when ALPN chose `h2`, the HTTP/2 engine (`h2`).
//!
//! The header clock runs from the connection's accept (PROXY header and TLS handshake
//! included) for its first request and from the first byte of each later one; when it runs
//! out, the read fails and the connection is closed. The HTTP/1 engine stops the clock once a
//! head is parsed and sets it waiting for the next request when the request ends; the wait
//! between requests is the keep-alive timeout's business. The clock only arms a timer when a
//! header read would block: usually once per connection (the first request's read waits for the
//! client), rarely on keep-alive requests, whose header tends to arrive in the read that wakes
//! the connection. Idle time before a connection's first byte counts, as with nginx's
//! `client_header_timeout`: an unused browser preconnect is closed after the limit.
//!
//! A connection over the per-IP limit is still served its first request, as a logged 429 that
//! closes it; an HTTP/2 connection over the limit is closed at once. An HTTP/2 connection's
//! handshake (preface and SETTINGS) must arrive within the same header clock; its streams have
//! no per-request clock (the h2 crate reads frames, bounded by its header-list limit).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::tls::SslDigest;
use pingora::protocols::{SocketDigest, Stream, ALPN};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::in_flight::Open;
use super::phases::Peer;
use super::Proxy;
use crate::observe::metrics::{conn_metrics, ConnGauges, Protocol};
use crate::policy::conn_limit::ConnGuard;
use crate::policy::ip::canonical;
use crate::policy::proxy_protocol::read_header;
use crate::snapshot::{SharedSnapshot, Snapshot};
use crate::tls::listener::TlsTerminator;
use crate::tls::resolver::ConnInfo;
use http::HeaderValue;

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
    /// Its place in the process's count of open connections (what a drain waits for).
    _open: Open,
    /// Its listener's gauges: open connections and requests in flight.
    gauges: Arc<ConnGauges>,
    /// The client already held `max_connections_per_ip` connections when this one arrived.
    over_limit: bool,
    phase: u8,
    started: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl std::fmt::Debug for ClientConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConn")
            .field("inner", &self.inner)
            .field("limit", &self.limit)
            .field("phase", &self.phase)
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
        gauges: ConnGauges,
    ) -> Self {
        let started = accepted_at(&inner);
        Self {
            inner,
            limit,
            gauges: Arc::new(gauges),
            _counted: counted,
            _open: Open::start(),
            over_limit,
            phase: if clock { HEADER } else { DONE },
            started,
            sleep: None,
        }
    }

    /// Whether the client was over `max_connections_per_ip` when this connection arrived.
    pub fn over_limit(&self) -> bool {
        self.over_limit
    }

    /// The request header is parsed: stop the clock.
    pub fn header_done(&mut self) {
        self.phase = DONE;
    }

    /// A request header has begun (its first bytes are already read): its clock runs from now.
    pub fn header_started(&mut self) {
        self.started = Instant::now();
        self.phase = HEADER;
    }

    /// The request is over: the next byte that arrives starts the next header's clock.
    pub fn request_done(&mut self) {
        self.phase = WAITING;
    }

    /// The connection's addresses (the PROXY protocol's where the listener reads one).
    pub fn socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    /// The TLS session's version, cipher and SNI, on a TLS connection.
    pub fn ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn timed_out(&self) -> std::io::Error {
        crate::observe::metrics::metrics().deny(None, "header_timeout");
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "request header not complete within header_read_timeout ({} ms)",
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
        let phase = this.phase;
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
                    this.phase = HEADER;
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

/// The application of menshen's listeners: a [`ClientConn`] around every connection, served
/// by the HTTP/1 engine (`h1`) or, when ALPN chose `h2`, the HTTP/2 engine (`h2`).
pub struct ConnGate {
    proxy: Proxy,
    state: SharedSnapshot,
    /// The listeners sit behind an L4 balancer that sends a PROXY header.
    proxy_protocol: bool,
    /// Handshakes for connections that arrive on TLS listeners.
    tls: Option<Arc<TlsTerminator<Snapshot>>>,
}

impl ConnGate {
    /// Serves with `proxy`; each new connection takes the limits of the snapshot serving then.
    /// `proxy_protocol`: read a PROXY header off each connection first; `tls`: then terminate
    /// TLS (the service's listeners are TLS listeners).
    pub fn new(
        proxy: Proxy,
        state: SharedSnapshot,
        proxy_protocol: bool,
        tls: Option<Arc<TlsTerminator<Snapshot>>>,
    ) -> Self {
        Self {
            proxy,
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
impl ServerApp for ConnGate {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // The header clock starts at the accept: the PROXY header and the handshake count.
        let deadline = accepted_at(&stream) + self.state.load().policy.header_read_timeout;
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().cloned());
        // The handshake's future, and below each protocol's, are boxed apart: this future lives
        // as long as the connection, and unboxed it would be as large as the largest of them
        // (about 9 KiB) for every idle connection, whatever its protocol.
        let open = Box::pin(self.open(stream));
        let stream = match tokio::time::timeout_at(deadline, open).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                // Refused or failed handshakes; a peer that leaves before its hello is not one.
                if e.etype() == &pingora::ErrorType::TLSHandshakeFailure {
                    conn_metrics().handshake_failed(&e.to_string());
                }
                tracing::debug!(peer = ?peer, "connection dropped before its first request: {e}");
                return None;
            }
            Err(_) => {
                crate::observe::metrics::metrics().deny(None, "header_timeout");
                tracing::debug!(peer = ?peer, "connection dropped: no handshake or PROXY header within header_read_timeout");
                return None;
            }
        };
        if let Some(tls) = stream.get_ssl_digest() {
            conn_metrics().handshake_ok(&tls.version);
        }
        // h2 only by ALPN: plaintext h2 (h2c) is not enabled on these listeners.
        let h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
        let snapshot = self.state.load();
        let port = stream
            .get_socket_digest()
            .and_then(|d| d.local_addr()?.as_inet().map(|a| a.port()));
        let listener = port.and_then(|p| snapshot.listener_names.get(&p));
        let protocol = if h2 { Protocol::Http2 } else { Protocol::Http1 };
        let gauges = conn_metrics().connection(listener.map(|l| &**l), protocol);
        let policy = &snapshot.policy;
        let (counted, over_limit) = count_per_ip(policy, &stream);
        if over_limit && h2 {
            crate::observe::metrics::metrics().deny(None, "max_connections_per_ip");
            return None;
        }
        let limit = policy.header_read_timeout;
        drop(snapshot);
        let conn = ClientConn::new(stream, limit, counted, over_limit, !h2, gauges);
        if h2 {
            Box::pin(self.proxy.serve_h2(conn, shutdown)).await;
        } else {
            Box::pin(self.proxy.serve_h1(conn, shutdown)).await;
        }
        None
    }
}

/// The connection counted against its client's IP (a trusted proxy's are not), and whether it
/// is over `max_connections_per_ip`.
fn count_per_ip(policy: &crate::policy::Policy, stream: &Stream) -> (Option<ConnGuard>, bool) {
    let limited = client_ip(stream).zip(policy.max_connections_per_ip);
    match limited {
        Some((ip, max)) if !policy.trusted_proxies.contains(ip) => {
            match policy.connections.acquire(ip, max.get()) {
                Some(guard) => (Some(guard), false),
                None => (None, true),
            }
        }
        _ => (None, false),
    }
}

/// What a connection tells every request on it.
pub(in crate::proxy) struct ConnFacts {
    pub(in crate::proxy) peer: Peer,
    pub(in crate::proxy) listener_port: Option<u16>,
    pub(in crate::proxy) tls: Option<Arc<SslDigest>>,
    /// The listener's gauges (a request counts itself in flight there).
    pub(in crate::proxy) gauges: Arc<ConnGauges>,
}

impl ConnFacts {
    pub(in crate::proxy) fn of(conn: &ClientConn) -> Self {
        let digest = conn.socket_digest();
        let inet = |a: Option<&pingora::protocols::l4::socket::SocketAddr>| {
            a.and_then(|a| a.as_inet()).copied()
        };
        let tls = conn.ssl_digest();
        let info = tls.as_ref().and_then(|t| t.extension.get::<ConnInfo>());
        let sni = info.and_then(|info| info.sni.clone());
        let client_cert = info.and_then(|info| info.client_cert.clone());
        let addr = inet(digest.as_ref().and_then(|d| d.peer_addr()))
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        Self {
            peer: Peer {
                addr,
                ip_text: HeaderValue::from_str(&canonical(addr.ip()).to_string()).ok(),
                sni,
                client_cert,
            },
            listener_port: inet(digest.as_ref().and_then(|d| d.local_addr())).map(|a| a.port()),
            tls,
            gauges: conn.gauges.clone(),
        }
    }
}
