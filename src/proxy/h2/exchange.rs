//! An HTTP/2 request's way to an HTTP/1 backend: the request head written as HTTP/1.1 (the
//! client's fields less what menshen sets, cookies joined, the body framed by its length or
//! chunked), the body streamed as DATA frames arrive, the response head read; then `relay`.

use std::io;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::RecvStream;
use http::{header, HeaderName, HeaderValue, Method};
use tokio::io::AsyncWriteExt;

use super::answer::{unanswered, Outcome};
use super::upload::{Replay, Upload, UploadError};
use crate::proxy::attempts::{head_failure, io_failure, limit, Attempt, Unanswered};
use crate::proxy::cache::stale_on_error;
use crate::proxy::conn::ConnFacts;
use crate::proxy::ctx::Ctx;
use crate::proxy::forwarding::{edited_out, forwarding_fields, Hop, Protocol, Received};
use crate::proxy::http1::{
    push_field, push_field_parts, read_response_head, Framing, UPSTREAM_BUF,
};
use crate::proxy::own::{io_status, Asking};
use crate::proxy::phases::Unconnected;
use crate::proxy::timed::within;
use crate::proxy::Proxy;
use crate::route::pool::{self, Kind};
use crate::route::retry::Stake;
use crate::route::router::ProxyAction;
use crate::route::upstream_conn::UpstreamConn;
use crate::semantics::fields::{field, Field};
use crate::semantics::target::{Host, Target};

/// What the exchange needs of a mapped request.
pub(super) struct Request<'a> {
    pub(super) parts: &'a http::request::Parts,
    pub(super) target: &'a Target<'a>,
    pub(super) host: &'a Host<'a>,
    pub(super) length: Option<u64>,
}

impl Request<'_> {
    /// What an error answer to it is chosen by (`proxy::own`).
    pub(super) fn asking<'a>(&'a self, ctx: &'a Ctx) -> Asking<'a> {
        super::answer::asking(ctx, self.parts, self.host.name())
    }
}

impl Proxy {
    /// Sends the request to a backend and its response to the client.
    pub(super) async fn h2_exchange(
        &self,
        facts: &ConnFacts,
        request: &Request<'_>,
        mut body: RecvStream,
        action: &ProxyAction,
        ctx: &mut Ctx,
        respond: &mut SendResponse<Bytes>,
    ) -> Outcome {
        let headers = &request.parts.headers;
        let head = request.parts.method == Method::HEAD;
        ctx.ask_compression(head, false, |name| headers.get(name).map(|v| v.as_bytes()));
        let kind = action.connection_kind(request.host.as_str());
        if action.upstream.offers_http2() {
            match self
                .to_h2(facts, request, body, (action, kind), ctx, respond)
                .await
            {
                Ok(outcome) => return outcome,
                // The backend chose HTTP/1.1.
                Err(returned) => body = returned,
            }
        }
        let send = ctx.snapshot.as_ref().map(|s| s.policy.send_timeout);
        let framing = match (body.is_end_stream(), request.length) {
            (true, _) => None,
            (false, Some(n)) => Some(Framing::Length(n)),
            (false, None) => Some(Framing::Chunked),
        };
        let mut out = Vec::with_capacity(1024);
        upstream_head(&mut out, request, framing, action, ctx, facts);
        let mut up = BytesMut::with_capacity(UPSTREAM_BUF);
        let to = (action, kind);
        let sent = self.h2_send_request(request, &out, &mut body, framing, to, ctx, &mut up);
        let (stream, addr, end, bytes_in) = match sent.await {
            Ok(ok) => ok,
            Err(failed) => {
                if failed.status.is_some_and(|s| s >= 500) {
                    if let Some(hit) = stale_on_error(ctx) {
                        return super::stored::send_hit(facts, ctx, &hit, head, respond).await;
                    }
                }
                let asking = request.asking(ctx);
                return unanswered(respond, asking, (head, send), failed).await;
            }
        };
        let relay = super::relay::Relay {
            parts: request.parts,
            host: request.host.name(),
            ctx,
            facts,
            addr,
            kind,
            send,
            head_request: head,
            bytes_in,
        };
        relay.run(stream, up, end, respond).await
    }

    /// Writes the request to a backend (others as the route's retry policy allows; a new
    /// connection after a stale pooled one, for a request without a body) and reads the final
    /// attempt's response head into `up`: the connection, the backend, the head's length and
    /// the body bytes sent.
    #[allow(clippy::too_many_arguments)]
    async fn h2_send_request(
        &self,
        request: &Request<'_>,
        head: &[u8],
        body: &mut RecvStream,
        framing: Option<Framing>,
        (action, kind): (&ProxyAction, Kind<'_>),
        ctx: &mut Ctx,
        up: &mut BytesMut,
    ) -> Result<(UpstreamConn, std::net::SocketAddr, usize, u64), Unanswered> {
        let parts = request.parts;
        // The body streams from the client as it comes, kept for another attempt while short.
        let mut replay = Replay::default();
        let stake = |replay: &Replay| Stake {
            idempotent: parts.method.is_idempotent(),
            replayable: replay.whole(),
        };
        loop {
            let header = |name: &HeaderName| parts.headers.get(name).map(HeaderValue::as_bytes);
            let addr = self
                .pick_backend(action, ctx, request.target.path(), header)
                .map_err(|e| Unanswered::answer(502, e.to_string()))?;
            let sending = (&mut *body, &mut replay);
            let attempt = self.h2_attempt(request, head, sending, framing, kind, ctx, up, addr);
            let attempt = attempt.await;
            let settled = self.settle(ctx, attempt, stake(&replay), |ctx, (_, end, _)| {
                head_failure(ctx, &up[..*end])
            });
            if let Some(settled) = settled.await {
                return settled.map(|(stream, end, bytes_in)| (stream, addr, end, bytes_in));
            }
        }
    }

    /// One attempt at backend `addr`: on a pooled connection (a new one when the pooled one
    /// turns out closed, for an idempotent request whose body is kept whole) or a new one.
    #[allow(clippy::too_many_arguments)]
    async fn h2_attempt(
        &self,
        request: &Request<'_>,
        head: &[u8],
        (body, replay): (&mut RecvStream, &mut Replay),
        framing: Option<Framing>,
        kind: Kind<'_>,
        ctx: &mut Ctx,
        up: &mut BytesMut,
        addr: std::net::SocketAddr,
    ) -> Attempt<(UpstreamConn, usize, u64)> {
        let mut pooled = pool::take(addr, kind, ctx.start);
        loop {
            let (mut stream, reused) =
                match self.pooled_or_new(ctx, addr, kind.name, &mut pooled).await {
                    Ok(taken) => taken,
                    Err(Unconnected::TryAnother) => return Attempt::Again,
                    Err(Unconnected::Fail(failed)) => return Attempt::Gave(failed),
                };
            up.clear();
            let mut received = false;
            let sending = (&mut *body, &mut *replay);
            let sent = send_and_read(ctx, &mut stream, head, sending, framing, up, &mut received);
            match sent.await {
                Ok((end, bytes_in)) => return Attempt::Answered((stream, end, bytes_in)),
                Err(Err(failed)) => return Attempt::Gave(failed),
                // A pooled connection the backend had closed: a request whose body is kept
                // goes once more on a new one.
                Err(Ok((kind, _)))
                    if reused
                        && !received
                        && replay.whole()
                        && kind != io::ErrorKind::TimedOut
                        && request.parts.method.is_idempotent() => {}
                Err(Ok((kind, error))) => {
                    let failed = Unanswered::answer(io_status(kind), format!("{addr}: {error}"));
                    return Attempt::Failed(io_failure(kind), failed);
                }
            }
        }
    }
}

/// Writes the request head and the body (as it streams from the client) to `stream`, then
/// reads the response head into `up` within the route's first-byte timeout: its length and
/// the body bytes sent. `Err(Err(_))`: the client's body failed.
#[allow(clippy::too_many_arguments)]
async fn send_and_read(
    ctx: &Ctx,
    stream: &mut UpstreamConn,
    head: &[u8],
    (body, replay): (&mut RecvStream, &mut Replay),
    framing: Option<Framing>,
    up: &mut BytesMut,
    received: &mut bool,
) -> Result<(usize, u64), Result<(io::ErrorKind, String), Unanswered>> {
    let snapshot = ctx.snapshot.as_ref();
    let write = ctx
        .proxy_action()
        .and_then(|a| a.upstream.options().write_timeout);
    let write = limit(write, ctx.deadline());
    within(write, stream.write_all(head))
        .await
        .map_err(|e| Ok((e.kind(), format!("writing the request: {e}"))))?;
    let upload = Upload {
        chunked: framing == Some(Framing::Chunked),
        max: ctx.max_body(),
        read: snapshot.map(|s| s.policy.body_read_timeout),
        write: ctx.idle_limit(),
    };
    let bytes_in = match upload.run(body, stream, framing.is_some(), replay).await {
        Ok(n) => n,
        Err(UploadError::Client(e)) => {
            let error = format!("reading the request body: {e}");
            return Err(Err(Unanswered::client_gone(error)));
        }
        Err(UploadError::TooLarge) => {
            crate::observe::metrics::metrics().deny(None, "body_too_large");
            return Err(Err(Unanswered::answer(413, "request body too large")));
        }
        Err(UploadError::Backend(e)) => {
            return Err(Ok((e.kind(), format!("writing the request body: {e}"))))
        }
    };
    let end = read_response_head(stream, up, ctx.first_byte_limit(), received).await;
    end.map(|end| (end, bytes_in)).map_err(Ok)
}

/// Writes the HTTP/1.1 request head for the backend into `out`.
fn upstream_head(
    out: &mut Vec<u8>,
    request: &Request<'_>,
    framing: Option<Framing>,
    action: &ProxyAction,
    ctx: &Ctx,
    facts: &ConnFacts,
) {
    let target = request.target.as_str();
    let path = action.rewrite.apply(ctx.route_prefix(), target);
    let host = match &action.host_header {
        Some(host) => host.as_bytes(),
        None => request.host.as_str().as_bytes(),
    };
    let sent = path.as_deref().unwrap_or(target);
    let forwarded = |name: &str| !edited_out(ctx, name);
    mapped_head(out, request.parts, sent, host, framing, forwarded);
    let hop = Hop {
        host: request.host.as_str(),
        protocol: Protocol::Http2,
        received: Received::of(&request.parts.headers),
    };
    forwarding_fields(&hop, ctx, facts, |name, parts| {
        push_field_parts(out, name.as_bytes(), parts)
    });
    out.extend_from_slice(b"\r\n");
}

/// The request line and the client's fields of an HTTP/2 request as HTTP/1.1 (without the
/// empty line that ends the head): `path` and `host` as sent, the fields less what menshen
/// sets, cookies joined, the body's framing.
pub(super) fn mapped_head(
    out: &mut Vec<u8>,
    parts: &http::request::Parts,
    path: &str,
    host: &[u8],
    framing: Option<Framing>,
    forwarded: impl Fn(&str) -> bool,
) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // HTTP/2 sends each cookie pair as a field of its own; HTTP/1 wants one (RFC 9113 8.2.3),
    // written whole where the first one was.
    let mut cookies_done = false;
    for (name, value) in &parts.headers {
        let kept = matches!(field(name.as_str()), Field::Other | Field::UserAgent);
        if !kept || !forwarded(name.as_str()) {
            continue;
        }
        if name == header::COOKIE {
            if !std::mem::replace(&mut cookies_done, true) {
                push_cookies(out, &parts.headers);
            }
            continue;
        }
        push_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    push_field(out, b"host", host);
    match framing {
        Some(Framing::Length(n)) => push_field(
            out,
            b"content-length",
            itoa::Buffer::new().format(n).as_bytes(),
        ),
        Some(_) => push_field(out, b"transfer-encoding", b"chunked"),
        // A POST without a body still says so: some backends want a length (411).
        None if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) => {
            push_field(out, b"content-length", b"0")
        }
        None => {}
    }
}

/// The one `Cookie` line of all the request's cookie fields, joined with `; `.
fn push_cookies(out: &mut Vec<u8>, headers: &http::HeaderMap) {
    let mut parts: Vec<&[u8]> = Vec::new();
    for (i, value) in headers.get_all(header::COOKIE).iter().enumerate() {
        if i > 0 {
            parts.push(b"; ");
        }
        parts.push(value.as_bytes());
    }
    push_field_parts(out, b"cookie", &parts);
}
