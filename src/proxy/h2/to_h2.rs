//! An HTTP/2 request to a backend that speaks HTTP/2 (`http2 = true`: TLS with ALPN `h2`, or
//! h2c): gRPC's way. The request goes as a stream on the thread's connection to the backend
//! (`route::h2_pool`), its body pumped by a task of its own so that both directions flow at
//! once (bidirectional streaming), `te: trailers` kept; the response goes to the client as
//! `from_h2` relays it, compressed where the site compresses (never gRPC).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderName, HeaderValue, Method};
use tokio::task::JoinHandle;

use super::answer::{unanswered, Outcome};
use super::exchange::Request;
use super::from_h2::Relay;
use crate::proxy::attempts::{h2_failure, stream_failure, NoResponse, Picked, Unanswered};
use crate::proxy::conn::ConnFacts;
use crate::proxy::ctx::Ctx;
use crate::proxy::forwarding::{Protocol, Received};
use crate::proxy::http2::{backend_request, send_data, trailers_filtered, Outgoing};
use crate::proxy::own;
use crate::proxy::phases::Unconnected;
use crate::proxy::timed::within;
use crate::proxy::Proxy;
use crate::route::h2_pool;
use crate::route::pool::{self, Kind};
use crate::route::retry::Stake;
use crate::route::router::ProxyAction;

/// The window each stream and each connection to a backend offers for responses.
const STREAM_WINDOW: u32 = 1024 * 1024;

/// A backend's answer: who answered, the response, and the task still sending the body.
type Answered = (
    SocketAddr,
    http::Response<RecvStream>,
    Option<JoinHandle<Pumped>>,
);
const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;

impl Proxy {
    /// Sends the request as an HTTP/2 stream to a backend (others as the route's retry policy
    /// allows) and its response to the client. `Err(body)`: the backend chose HTTP/1.1 by ALPN
    /// (its connection is in the HTTP/1 pool), and the request goes that way.
    pub(super) async fn to_h2(
        &self,
        facts: &ConnFacts,
        request: &Request<'_>,
        body: RecvStream,
        to: (&ProxyAction, Kind<'_>),
        ctx: &mut Ctx,
        respond: &mut SendResponse<Bytes>,
    ) -> Result<Outcome, RecvStream> {
        let head = request.parts.method == Method::HEAD;
        let send = ctx.snapshot.as_ref().map(|s| s.policy.send_timeout);
        let (addr, response, pump) = match self.h2_attempts(facts, request, body, to, ctx).await? {
            Ok(answered) => answered,
            Err(failed) => {
                let asking = request.asking(ctx);
                return Ok(unanswered(respond, asking, (head, send), failed).await);
            }
        };
        ctx.answered(response.status().as_u16());
        let relay = Relay {
            ctx,
            facts,
            addr,
            head,
            send,
        };
        let mut outcome = relay.run(response, respond).await;
        if let Some(pump) = pump {
            // The response is over: what the client still streams has nowhere to go.
            pump.abort();
            outcome.bytes_in = pump.await.map_or(0, |p| p.total);
        }
        Ok(outcome)
    }

    /// Attempts the request at the upstream's backends until one answers or the route's retry
    /// policy gives up: the backend's answer, or what the client gets instead. `Err(body)`: the
    /// backend chose HTTP/1.1 before any of the body was sent.
    async fn h2_attempts(
        &self,
        facts: &ConnFacts,
        request: &Request<'_>,
        body: RecvStream,
        (action, kind): (&ProxyAction, Kind<'_>),
        ctx: &mut Ctx,
    ) -> Result<Result<Answered, Unanswered>, RecvStream> {
        let idempotent = request.parts.method.is_idempotent();
        let mut body = Some(Upload::Client(body));
        let answered = loop {
            let (path, fields) = (request.target.path(), &request.parts.headers);
            let header = |name: &HeaderName| fields.get(name).map(HeaderValue::as_bytes);
            let (addr, sender) = match self.h2_pick(ctx, action, path, header, kind).await {
                Picked::Ready(addr, sender) => (addr, sender),
                // Only a body that was never sent is still here.
                Picked::Http1 => match body.take() {
                    Some(Upload::Client(body)) => return Err(body),
                    Some(Upload::Held(_)) | None => {
                        break Err(Unanswered::answer(502, "body already sent"))
                    }
                },
                Picked::Again => continue,
                Picked::Fail(failed) => break Err(failed),
            };
            let stream = Stream { sender, addr, kind };
            let sent = self.backend_stream(stream, request, &mut body, action, ctx, facts);
            let sent = sent.await;
            let stake = stake(idempotent, &body);
            match sent {
                Ok((r, _)) if self.retry_response(ctx, &r, stake).await => continue,
                Ok((response, pump)) => break Ok((addr, response, pump)),
                Err(NoResponse(f, ..)) if self.retry_if(ctx, f, stake).await => continue,
                Err(NoResponse(_, unanswered)) => break Err(unanswered),
            }
        };
        Ok(answered)
    }

    /// Picks a backend for the next attempt and a ready HTTP/2 connection to it.
    pub(in crate::proxy) async fn h2_pick<'h>(
        &self,
        ctx: &mut Ctx,
        action: &ProxyAction,
        path: &str,
        header: impl FnOnce(&HeaderName) -> Option<&'h [u8]>,
        kind: Kind<'_>,
    ) -> Picked {
        let addr = match self.pick_backend(action, ctx, path, header) {
            Ok(addr) => addr,
            Err(e) => return Picked::Fail(Unanswered::answer(502, e.to_string())),
        };
        match self.h2_sender(ctx, action, addr, kind).await {
            Ok(Some(sender)) => Picked::Ready(addr, sender),
            Ok(None) => Picked::Http1,
            Err(Unconnected::TryAnother) => Picked::Again,
            Err(Unconnected::Fail(failed)) => Picked::Fail(failed),
        }
    }

    /// Sends the request as a stream on `stream.sender`, its body (taken from `body`) pumped
    /// by a task of its own, and waits for the response head within the route's first-byte
    /// timeout. When none comes, a body the pump sent whole and held is back in `body`.
    async fn backend_stream(
        &self,
        stream: Stream<'_>,
        request: &Request<'_>,
        body: &mut Option<Upload>,
        action: &ProxyAction,
        ctx: &Ctx,
        facts: &ConnFacts,
    ) -> Result<(http::Response<RecvStream>, Option<JoinHandle<Pumped>>), NoResponse> {
        let Stream { sender, addr, kind } = stream;
        let parts = request.parts;
        let outgoing = Outgoing {
            method: &parts.method,
            target: request.target.as_str(),
            host: request.host.as_str(),
            fields: parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes())),
            length: request.length,
            protocol: Protocol::Http2,
            received: Received::of(&parts.headers),
        };
        let upstream = backend_request(outgoing, action, ctx, facts)
            .map_err(|e| NoResponse(None, Unanswered::answer(400, e)))?;
        let end = body.as_ref().is_none_or(Upload::is_empty);
        let (response, upload) = sender.clone().send_request(upstream, end).map_err(|e| {
            h2_pool::forget(addr, kind);
            let error = format!("{addr}: sending the request: {e}");
            NoResponse(Some(h2_failure(&e)), Unanswered::answer(502, error))
        })?;
        let max_body = ctx.max_body();
        let body_timeout = ctx.snapshot.as_ref().map(|s| s.policy.body_read_timeout);
        let streamed = body.take_if(|b| !b.is_empty());
        let limits = (body_timeout, ctx.idle_limit());
        let pump = streamed.map(|body| tokio::spawn(pump(body, upload, max_body, limits)));
        let response = within(ctx.first_byte_limit(), async {
            response.await.map_err(io::Error::other)
        });
        match response.await {
            Ok(response) => Ok((response, pump)),
            Err(e) => {
                if let Some(pump) = pump {
                    pump.abort();
                    if let Ok(Pumped {
                        held: Some(all), ..
                    }) = pump.await
                    {
                        *body = Some(Upload::Held(all));
                    }
                }
                let error = format!("{addr}: {e}");
                let status = own::io_status(e.kind());
                Err(NoResponse(
                    Some(stream_failure(&e)),
                    Unanswered::answer(status, error),
                ))
            }
        }
    }

    /// A sender on a ready HTTP/2 connection to `addr`: the thread's, or a new one. `Ok(None)`:
    /// the backend chose HTTP/1.1 (the new connection went to the HTTP/1 pool).
    pub(in crate::proxy) async fn h2_sender(
        &self,
        ctx: &mut Ctx,
        action: &ProxyAction,
        addr: SocketAddr,
        kind: Kind<'_>,
    ) -> Result<Option<SendRequest<Bytes>>, Unconnected> {
        if let Some(sender) = h2_pool::take(addr, kind) {
            match sender.ready().await {
                Ok(sender) => return Ok(Some(sender)),
                Err(_) => h2_pool::forget(addr, kind),
            }
        }
        let conn = self.connect_backend(ctx, action, addr, kind.name).await?;
        if action.upstream.tls().is_some() && !conn.chose_h2() {
            let (_, idle) = ctx.backend_timeouts();
            pool::put(addr, kind, conn, idle, ctx.start);
            ctx.retract_attempt();
            return Ok(None);
        }
        let handshake = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake::<_, Bytes>(conn)
            .await;
        let (sender, connection) = handshake.map_err(|e| {
            let error = format!("HTTP/2 handshake with {addr}: {e}");
            Unconnected::Fail(Unanswered::answer(502, error))
        })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(backend = %addr, "HTTP/2 connection to the backend ended: {e}");
            }
        });
        h2_pool::put(addr, kind, sender.clone());
        let sender = sender.ready().await.map_err(|e| {
            let error = format!("HTTP/2 connection to {addr}: {e}");
            Unconnected::Fail(Unanswered::answer(502, error))
        })?;
        Ok(Some(sender))
    }
}

/// A ready stream's way to a backend.
struct Stream<'k> {
    sender: SendRequest<Bytes>,
    addr: SocketAddr,
    kind: Kind<'k>,
}

/// The most of a request body held while it is sent, so that the request can go again
/// (as much as the HTTP/1 engine's read that brings a head holds).
const HOLD: usize = 16 * 1024;

/// A request body for the next attempt.
enum Upload {
    /// Streaming from the client.
    Client(RecvStream),
    /// Sent whole once and held (at most [`HOLD`] bytes, no trailers).
    Held(Bytes),
}

impl Upload {
    /// Nothing to send.
    fn is_empty(&self) -> bool {
        match self {
            Upload::Client(body) => body.is_end_stream(),
            Upload::Held(all) => all.is_empty(),
        }
    }

    /// The whole body is here (or there is none), so the request can go again.
    fn whole(&self) -> bool {
        matches!(self, Upload::Held(_)) || self.is_empty()
    }
}

/// What sending the request again would risk: `body` is what is left of its body.
fn stake(idempotent: bool, body: &Option<Upload>) -> Stake {
    let replayable = body.as_ref().is_some_and(Upload::whole);
    Stake {
        idempotent,
        replayable,
    }
}

/// What a pump sent: the payload bytes, and the body whole when it was sent whole and small.
struct Pumped {
    total: u64,
    held: Option<Bytes>,
}

/// Pumps the body (and trailers) to the backend's stream, under both windows; a body of at
/// most [`HOLD`] bytes is kept. A client that breaks off, or a body over `max`, resets the
/// backend's stream. `read` limits each wait for the client's body, `write` each wait for the
/// backend's window.
async fn pump(
    body: Upload,
    mut upload: SendStream<Bytes>,
    max: Option<u64>,
    (read, write): (Option<Duration>, Option<Duration>),
) -> Pumped {
    let mut body = match body {
        Upload::Client(body) => body,
        Upload::Held(all) => return resend(all, upload, write).await,
    };
    let mut total = 0u64;
    let mut kept = BytesMut::new();
    let cut = |total| Pumped { total, held: None };
    loop {
        let next = within(read, async { Ok(body.data().await) }).await;
        let chunk = match next {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(None) => break,
            Ok(Some(Err(_))) | Err(_) => {
                upload.send_reset(Reason::CANCEL);
                return cut(total);
            }
        };
        let _ = body.flow_control().release_capacity(chunk.len());
        total += chunk.len() as u64;
        if max.is_some_and(|max| total > max) {
            upload.send_reset(Reason::CANCEL);
            return cut(total);
        }
        if total <= HOLD as u64 {
            kept.extend_from_slice(&chunk);
        }
        if send_data(&mut upload, chunk, false, write).await.is_err() {
            upload.send_reset(Reason::CANCEL);
            return cut(total);
        }
    }
    let (ended, whole) = match body.trailers().await {
        // The same fields as the head may carry: no forwarding field (X-Forwarded-Client-Cert,
        // X-Forwarded-For...) slips in as a trailer.
        Ok(Some(trailers)) => (
            upload.send_trailers(trailers_filtered(trailers)).is_ok(),
            false,
        ),
        Ok(None) => (upload.send_data(Bytes::new(), true).is_ok(), true),
        Err(_) => (false, false),
    };
    if !ended {
        upload.send_reset(Reason::CANCEL);
    }
    let held = (ended && whole && total <= HOLD as u64).then(|| kept.freeze());
    Pumped { total, held }
}

/// Sends a body held from an earlier attempt again, whole.
async fn resend(all: Bytes, mut upload: SendStream<Bytes>, write: Option<Duration>) -> Pumped {
    let total = all.len() as u64;
    if send_data(&mut upload, all.clone(), true, write)
        .await
        .is_err()
    {
        upload.send_reset(Reason::CANCEL);
    }
    Pumped {
        total,
        held: Some(all),
    }
}
