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
        loop {
            let idle = async {
                match keepalive {
                    Some(limit) => tokio::time::sleep(limit).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                next = connection.accept() => match next {
                    Some(Ok((request, respond))) => {
                        let (this, facts, open) = (self.clone(), facts.clone(), open.clone());
                        open.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(async move {
                            this.h2_stream(&facts, request, respond).await;
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
                _ = idle, if !closing => {
                    if open.load(Ordering::Relaxed) == 0 {
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
