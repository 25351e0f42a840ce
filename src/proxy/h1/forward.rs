//! A proxied request's exchange with its backend: pick a backend, send the request head and
//! body (on a pooled connection, another backend after a failed connect, a new connection after
//! a stale pooled one), read the response header, pass interim responses on, then hand the
//! final response to `relay` (or the connection to `tunnel` after `101 Switching Protocols`).

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;

use super::own::{answer_unanswered, io_status};
use super::relay::Relay;
use super::request::{upstream_request, Req, Request};
use super::upload::{Upload, UploadError};
use super::{send_timeout, Buffers, Outcome};
use crate::proxy::attempts::{head_failure, io_failure, limit, Attempt, Unanswered};
use crate::proxy::cache::stale_on_error;
use crate::proxy::conn::{ClientConn, ConnFacts};
use crate::proxy::ctx::Ctx;
use crate::proxy::http1::read_response_head;
use crate::proxy::phases::Unconnected;
use crate::proxy::timed::within;
use crate::proxy::Proxy;
use crate::route::pool::{self, Kind};
use crate::route::retry::Stake;
use crate::route::router::ProxyAction;
use crate::route::upstream_conn::UpstreamConn;
use crate::semantics::coding::Skip;

impl Proxy {
    /// Sends the request to a backend and its response to the client.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn proxy(
        &self,
        conn: &mut ClientConn,
        facts: &ConnFacts,
        request: &Request<'_>,
        action: &ProxyAction,
        ctx: &mut Ctx,
        bufs: &mut Buffers,
        input: &mut BytesMut,
    ) -> Outcome {
        let how = (request.req.method == http::Method::HEAD, send_timeout(ctx));
        ask_compression(ctx, request);
        let (req, max_body) = (request.req, ctx.max_body());
        let mut upload = match Upload::new(req.body, input, max_body, req.expect_continue) {
            Ok(upload) => upload,
            Err(e) => {
                let (out, asking) = (&mut bufs.out, request.asking(ctx));
                return answer_unanswered(conn, out, &asking, body_failed(e), how, 0).await;
            }
        };
        let to = Forward::new(request, action, facts);
        if action.upstream.offers_http2() {
            let exchanged = self.h1_to_h2(conn, to, ctx, bufs, input, &mut upload);
            if let Some(outcome) = exchanged.await {
                return outcome;
            }
        }
        let exchanged = self.exchange(conn, input, to, ctx, bufs, &mut upload).await;
        let (stream, addr, end) = match exchanged {
            Ok(ok) => ok,
            Err(unanswered) => {
                // stale-if-error: only a backend's failure (a stale copy exists only for a
                // bodiless GET or HEAD, so a client's failed body never gets here with one).
                if unanswered.status.is_some_and(|s| s >= 500) {
                    if let Some(hit) = stale_on_error(ctx) {
                        return super::cached::write_hit(conn, facts, request, ctx, bufs, &hit)
                            .await;
                    }
                }
                let (out, asking) = (&mut bufs.out, request.asking(ctx));
                let answered =
                    answer_unanswered(conn, out, &asking, unanswered, how, upload.payload);
                return answered.await;
            }
        };
        let relay = Relay {
            request,
            ctx,
            facts,
            addr,
            kind: to.kind,
            send: how.1,
            bytes_in: upload.payload,
        };
        relay.run(conn, stream, end, bufs, input).await
    }

    /// Sends the request (head, then body) to a backend, and to others as the route's retry
    /// policy allows, and reads the final attempt's response header into `bufs.up`: its length.
    /// `Err(Err(_))` when the client's body failed.
    async fn exchange(
        &self,
        conn: &mut ClientConn,
        input: &mut BytesMut,
        to: Forward<'_, '_>,
        ctx: &mut Ctx,
        bufs: &mut Buffers,
        upload: &mut Upload,
    ) -> Result<(UpstreamConn, SocketAddr, usize), Unanswered> {
        let (request, action, kind, facts) = (to.request, to.action, to.kind, to.facts);
        let (req, parsed) = (request.req, request.parsed);
        let stake = |upload: &Upload| Stake {
            idempotent: req.method.is_idempotent(),
            replayable: !upload.streamed,
        };
        loop {
            let header = |name: &http::HeaderName| {
                let mut found = parsed.headers.iter();
                let found = found.find(|h| h.name.eq_ignore_ascii_case(name.as_str()));
                found.map(|h| h.value)
            };
            let addr = self
                .pick_backend(action, ctx, req.target.path(), header)
                .map_err(|e| Unanswered::answer(502, e.to_string()))?;
            upstream_request(&mut bufs.out, request, action, ctx, facts);
            bufs.out.extend_from_slice(&upload.staged);
            let attempt = self.attempt(conn, input, req, kind, ctx, bufs, upload, addr);
            let attempt = attempt.await;
            let up = &bufs.up;
            let settled = self.settle(ctx, attempt, stake(upload), |ctx, (_, end)| {
                head_failure(ctx, &up[..*end])
            });
            if let Some(settled) = settled.await {
                return settled.map(|(stream, end)| (stream, addr, end));
            }
        }
    }

    /// One attempt at backend `addr` with the request in `bufs.out`: on a pooled connection
    /// (a new one when the pooled one turns out closed, for a request that can go again) or a
    /// new one.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        conn: &mut ClientConn,
        input: &mut BytesMut,
        req: &Req<'_>,
        kind: Kind<'_>,
        ctx: &mut Ctx,
        bufs: &mut Buffers,
        upload: &mut Upload,
        addr: SocketAddr,
    ) -> Attempt<(UpstreamConn, usize)> {
        // The request's start is "now" enough for idle expiry: no clock read.
        let mut pooled = pool::take(addr, kind, ctx.start);
        loop {
            let (mut stream, reused) =
                match self.pooled_or_new(ctx, addr, kind.name, &mut pooled).await {
                    Ok(taken) => taken,
                    Err(Unconnected::TryAnother) => return Attempt::Again,
                    Err(Unconnected::Fail(failed)) => return Attempt::Gave(failed),
                };
            let mut received = false;
            let sent = send_and_read(conn, input, &mut stream, ctx, bufs, upload, &mut received);
            match sent.await {
                Ok(end) => return Attempt::Answered((stream, end)),
                Err(Err(e)) => return Attempt::Gave(body_failed(e)),
                // A pooled connection the backend had closed: an idempotent request whose
                // body is all here goes once more on a new one (as nginx and pingora retry).
                Err(Ok((kind, _)))
                    if reused
                        && !received
                        && !upload.streamed
                        && kind != io::ErrorKind::TimedOut
                        && req.method.is_idempotent() => {}
                Err(Ok((kind, error))) => {
                    let failed = Unanswered::answer(io_status(kind), format!("{addr}: {error}"));
                    return Attempt::Failed(io_failure(kind), failed);
                }
            }
        }
    }
}

/// Writes the request head (and staged body) in `bufs.out` to `stream`, the rest of the body
/// from the client, and reads the response head into `bufs.up` within the route's first-byte
/// timeout: its length.
#[allow(clippy::too_many_arguments)]
async fn send_and_read(
    conn: &mut ClientConn,
    input: &mut BytesMut,
    stream: &mut UpstreamConn,
    ctx: &Ctx,
    bufs: &mut Buffers,
    upload: &mut Upload,
    received: &mut bool,
) -> Result<usize, Result<(io::ErrorKind, String), UploadError>> {
    let policy = ctx.snapshot.as_ref().map(|s| s.policy.body_read_timeout);
    let body_timeout = policy.unwrap_or(std::time::Duration::from_secs(60));
    let write = ctx
        .proxy_action()
        .and_then(|a| a.upstream.options().write_timeout);
    let write = limit(write, ctx.deadline());
    let Buffers { out, up } = bufs;
    up.clear();
    within(write, stream.send_all(out))
        .await
        .map_err(|e| Ok((e.kind(), format!("writing the request: {e}"))))?;
    // The body's writes wait at most the route's idle_timeout each, as its reads do.
    let body_write = ctx.idle_limit();
    let rest = upload.send_rest(
        conn,
        input,
        stream,
        body_timeout,
        body_write,
        send_timeout(ctx),
    );
    match rest.await {
        Ok(()) => {}
        Err(UploadError::Backend(e)) if !upload.streamed => {
            return Err(Ok((e.kind(), format!("writing the request: {e}"))))
        }
        Err(e) => return Err(Err(e)),
    }
    read_response_head(stream, up, ctx.first_byte_limit(), received)
        .await
        .map_err(Ok)
}

/// A request on its way to its route's upstream: what goes, where, and over which kind of
/// connection.
#[derive(Clone, Copy)]
pub(super) struct Forward<'a, 'r> {
    pub(super) request: &'a Request<'r>,
    pub(super) action: &'a ProxyAction,
    pub(super) kind: Kind<'a>,
    pub(super) facts: &'a ConnFacts,
}

impl<'a, 'r> Forward<'a, 'r> {
    fn new(request: &'a Request<'r>, action: &'a ProxyAction, facts: &'a ConnFacts) -> Self {
        Forward {
            request,
            action,
            kind: action.connection_kind(request.req.host.as_str()),
            facts,
        }
    }
}

/// What the client gets when its request body could not be read or was refused.
pub(super) fn body_failed(e: UploadError) -> Unanswered {
    if matches!(e, UploadError::TooLarge) {
        crate::observe::metrics::metrics().deny(None, "body_too_large");
    }
    Unanswered {
        status: e.status(),
        error: e.to_string(),
    }
}

/// Notes the codings the client takes, for the response's compression.
fn ask_compression(ctx: &mut Ctx, request: &Request<'_>) {
    let req = request.req;
    ctx.ask_compression(
        req.method == http::Method::HEAD,
        req.upgrade.is_some(),
        |name| {
            let headers = request.parsed.headers.iter();
            let mut found = headers.filter(|h| h.name.eq_ignore_ascii_case(name));
            found.next().map(|h| h.value)
        },
    );
    if req.version == 0 {
        ctx.refuse_compression(Skip::Http10);
    }
}
