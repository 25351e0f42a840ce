//! menshen's HTTP/2 engine: the streams of a client's HTTP/2 connection (ALPN `h2`), each
//! judged by the same phases as an HTTP/1 request and proxied to HTTP/1 backends (plain or
//! TLS, from the same per-thread pool) or answered by menshen.
//!
//! The `h2` crate does the framing, HPACK, flow control and stream limits; this engine maps
//! requests and responses. A connection's way: `serve_h2` (the handshake, the accept loop,
//! GOAWAY on shutdown or after the keep-alive time with no stream open), `stream` (one
//! request: the canonical target and Host, the policy, an answer of menshen's own or the
//! exchange), `exchange` (the request to a backend over HTTP/1: head, body, the response
//! head back), `relay` (the response as HTTP/2 fields and DATA frames under the client's flow
//! control) or, for upstreams with `http2 = true`, `to_h2` (a stream on the thread's HTTP/2
//! connection to the backend, trailers included: gRPC). A body the backend breaks off ends the
//! stream with `RST_STREAM`, never as complete.

mod answer;
mod cached;
mod exchange;
mod from_h2;
mod relay;
mod stored;
mod stream;
mod to_h2;
mod upload;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pingora::server::ShutdownWatch;

use super::conn::ClientConn;
use super::conn::ConnFacts;
use super::timed::within;
use super::Proxy;

/// Streams a client may have open at once (nginx's `http2_max_concurrent_streams`).
const MAX_STREAMS: u32 = 128;
/// The window each stream and the connection offer for request bodies.
const STREAM_WINDOW: u32 = 256 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;

impl Proxy {
    /// Serves the streams of an HTTP/2 connection until the client or the shutdown ends it.
    pub(crate) async fn serve_h2(&self, conn: ClientConn, shutdown: &ShutdownWatch) {
        let facts = Arc::new(ConnFacts::of(&conn));
        let keepalive = self.state.load().policy.keepalive_timeout;
        let Some(mut connection) = self.h2_handshake(conn).await else {
            return;
        };
        let open = Arc::new(AtomicUsize::new(0));
        let mut shutdown = shutdown.clone();
        let mut closing = *shutdown.borrow();
        if closing {
            connection.graceful_shutdown();
        }
        // One timer for the connection's life, not one per stream.
        let mut idle = Idle::new(keepalive);
        loop {
            tokio::select! {
                next = connection.accept() => match next {
                    Some(Ok((request, respond))) => {
                        let (this, facts, open) = (self.clone(), facts.clone(), open.clone());
                        open.fetch_add(1, Ordering::Relaxed);
                        idle.streams_seen = true;
                        // The stream's state lives in its own allocation: the task stays
                        // small, so spawning and finishing it copies a few words, not the
                        // whole exchange's state.
                        tokio::spawn(async move {
                            Box::pin(this.h2_stream(&facts, request, respond)).await;
                            open.fetch_sub(1, Ordering::Relaxed);
                        });
                    }
                    Some(Err(e)) => {
                        tracing::debug!(peer = %facts.peer.addr, "HTTP/2 connection ended: {e}");
                        break;
                    }
                    None => break,
                },
                _ = shutdown.changed(), if !closing => {
                    // GOAWAY: streams already open finish; new ones go elsewhere.
                    closing = true;
                    connection.graceful_shutdown();
                }
                () = idle.tick(), if !closing && keepalive.is_some() => {
                    if idle.lapsed(open.load(Ordering::Relaxed)) {
                        closing = true;
                        connection.graceful_shutdown();
                    }
                }
            }
        }
    }

    /// The HTTP/2 handshake under the header clock, with the engine's stream and window sizes
    /// and the policy's limit on a head; `None` when it fails or takes too long.
    async fn h2_handshake(
        &self,
        conn: ClientConn,
    ) -> Option<h2::server::Connection<ClientConn, bytes::Bytes>> {
        let (max_head, handshake_limit) = {
            let policy = &self.state.load().policy;
            (
                u32::try_from(policy.max_head_bytes).unwrap_or(u32::MAX),
                policy.header_read_timeout,
            )
        };
        let mut builder = h2::server::Builder::new();
        builder
            .max_concurrent_streams(MAX_STREAMS)
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_header_list_size(max_head);
        let handshake = async { builder.handshake(conn).await.map_err(io::Error::other) };
        within(Some(handshake_limit), handshake).await.ok()
    }
}

/// The keep-alive clock of an HTTP/2 connection: one timer that ticks every keep-alive period.
/// The connection is idle when a whole period passed with no stream opened and none open, at
/// its start or its end; it then closes between one and two periods after its last stream.
struct Idle {
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    period: std::time::Duration,
    /// A stream was opened in this period.
    streams_seen: bool,
    /// Streams were open when the period began.
    open_at_start: bool,
}

impl Idle {
    fn new(period: Option<std::time::Duration>) -> Self {
        let period = period.unwrap_or(std::time::Duration::from_secs(3600));
        Idle {
            timer: Box::pin(tokio::time::sleep(period)),
            period,
            streams_seen: false,
            open_at_start: false,
        }
    }

    async fn tick(&mut self) {
        self.timer.as_mut().await;
    }

    /// At the end of a period: whether the connection was idle through it; else the next
    /// period begins.
    fn lapsed(&mut self, open: usize) -> bool {
        let busy = self.streams_seen || self.open_at_start || open > 0;
        if !busy {
            return true;
        }
        self.streams_seen = false;
        self.open_at_start = open > 0;
        let next = tokio::time::Instant::now() + self.period;
        self.timer.as_mut().reset(next);
        false
    }
}

/// An HTTP/2 request written as text (`METHOD PATH AUTHORITY`, then `name: value` lines)
/// mapped to HTTP/1: when menshen takes it, what the backend gets parses as exactly one
/// request the HTTP/1 engine would take too, for the same canonical target (`crate::fuzz`).
pub(crate) fn fuzz_request(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let mut first = lines.next().unwrap_or("").split(' ');
    let (method, path, authority) = (
        first.next().unwrap_or(""),
        first.next().unwrap_or(""),
        first.next().unwrap_or(""),
    );
    let mut builder = http::Request::builder()
        .method(method)
        .uri(format!("https://{authority}{path}"));
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            builder = builder.header(name, value.trim_start());
        }
    }
    let Ok(request) = builder.body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    let Ok((target, host, length)) = stream::mapped(&parts) else {
        return;
    };
    let framing = length.map(super::http1::Framing::Length);
    let mut out = Vec::new();
    exchange::mapped_head(
        &mut out,
        &parts,
        target.as_str(),
        host.as_str().as_bytes(),
        framing,
        |_| true,
    );
    out.extend_from_slice(b"\r\n");
    let read = super::h1::read_one_head(&out);
    assert_eq!(
        read.as_deref(),
        Some(target.as_str()),
        "{}",
        String::from_utf8_lossy(&out)
    );
}
