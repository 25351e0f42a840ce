//! A proxied request's exchange with its backend: pick a backend, send the request head and
//! body (on a pooled connection, another backend after a failed connect, a new connection after
//! a stale pooled one), read the response header, pass interim responses on, then hand the
//! final response to `relay` (or the connection to `tunnel` after `101 Switching Protocols`).

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;

use super::own::{error_response, io_status};
use super::relay::Relay;
use super::request::{upstream_request, Req, Request};
use super::upload::{Upload, UploadError};
use super::{send_timeout, Buffers, Outcome};
use crate::proxy::attempts::{head_failure, io_failure, limit};
use crate::proxy::cache::stale_on_error;
use crate::proxy::conn::{ClientConn, ConnFacts};
use crate::proxy::ctx::Ctx;
use crate::proxy::http1::read_response_head;
use crate::proxy::own::Asking;
use crate::proxy::phases::Unconnected;
use crate::proxy::timed::within;
use crate::proxy::Proxy;
use crate::route::pool::{self, Kind};
use crate::route::retry::{Failure, Stake};
use crate::route::router::ProxyAction;
use crate::route::upstream_conn::UpstreamConn;
use crate::semantics::coding::Skip;

/// Why no response came from a backend: the client's status, and what to log.
struct Failed(u16, String);

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
        let send = send_timeout(ctx);
        let head_request = request.req.method == http::Method::HEAD;
        let upgrade = request.req.upgrade.is_some();
        ctx.ask_compression(head_request, upgrade, |name| {
            let headers = request.parsed.headers.iter();
            let mut found = headers.filter(|h| h.name.eq_ignore_ascii_case(name));
            found.next().map(|h| h.value)
        });
        if request.req.version == 0 {
            ctx.refuse_compression(Skip::Http10);
        }
        let failed = |status: u16, error: String, bytes_in: u64| Outcome {
            status,
            bytes_in,
            bytes_out: 0,
            keep: false,
            error: Some(error),
        };
        let max_body = ctx
            .site
            .and_then(|i| ctx.snapshot.as_ref()?.site_policy(i))
            .map_or(u64::MAX, |s| s.max_body_bytes);
        let upload = Upload::new(
            request.req.body,
            input,
            max_body,
            request.req.expect_continue,
        );
        let mut upload = match upload {
            Ok(upload) => upload,
            Err(e) => {
                let asking = request.asking(ctx);
                return refuse_body(conn, bufs, &asking, e, (head_request, send), 0).await;
            }
        };
        let tls = action.upstream.tls();
        let kind = match tls {
            Some(tls) => Kind {
                group: tls.group,
                name: action.tls_name(request.req.host.as_str()),
            },
            None => Kind::PLAIN,
        };
        if action.upstream.offers_http2() {
            let exchanged = self
                .h1_to_h2(
                    conn,
                    facts,
                    request,
                    action,
                    kind,
                    ctx,
                    bufs,
                    input,
                    &mut upload,
                )
                .await;
            if let Some(outcome) = exchanged {
                return outcome;
            }
        }
        let exchanged = self
            .exchange(
                conn,
                input,
                request,
                action,
                kind,
                ctx,
                facts,
                bufs,
                &mut upload,
            )
            .await;
        let (stream, addr, end) = match exchanged {
            Ok(ok) => ok,
            Err(Ok(Failed(status, error))) => {
                if let Some(hit) = stale_on_error(ctx) {
                    return super::cached::write_hit(conn, facts, request, ctx, bufs, &hit).await;
                }
                let (out, asking) = (&mut bufs.out, request.asking(ctx));
                let sent = error_response(conn, out, status, &asking, head_request, send).await;
                let mut outcome = failed(status, error, upload.payload);
                outcome.bytes_out = sent;
                return outcome;
            }
            Err(Err(e)) => {
                let (asking, read) = (request.asking(ctx), upload.payload);
                return refuse_body(conn, bufs, &asking, e, (head_request, send), read).await;
            }
        };
        let relay = Relay {
            request,
            ctx,
            facts,
            addr,
            kind,
            send,
            bytes_in: upload.payload,
        };
        relay.run(conn, stream, end, bufs, input).await
    }

    /// Sends the request (head, then body) to a backend, and to others as the route's retry
    /// policy allows, and reads the final attempt's response header into `bufs.up`: its length.
    /// `Err(Err(_))` when the client's body failed.
    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        conn: &mut ClientConn,
        input: &mut BytesMut,
        request: &Request<'_>,
        action: &ProxyAction,
        kind: Kind<'_>,
        ctx: &mut Ctx,
        facts: &ConnFacts,
        bufs: &mut Buffers,
        upload: &mut Upload,
    ) -> Result<(UpstreamConn, SocketAddr, usize), Result<Failed, UploadError>> {
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
                .map_err(|e| Ok(Failed(502, e.to_string())))?;
            upstream_request(&mut bufs.out, request, action, ctx, facts);
            bufs.out.extend_from_slice(&upload.staged);
            let attempt = self.attempt(conn, input, req, kind, ctx, bufs, upload, addr);
            match attempt.await {
                Attempt::Answered(stream, end) => {
                    let failure = head_failure(ctx, &bufs.up[..end]);
                    match failure {
                        Some(f) if self.retry(ctx, f, stake(upload)).await => continue,
                        _ => return Ok((stream, addr, end)),
                    }
                }
                Attempt::Again => continue,
                Attempt::Failed(failure, failed) => {
                    if !self.retry(ctx, failure, stake(upload)).await {
                        return Err(Ok(failed));
                    }
                }
                Attempt::Gave(failed) => return Err(Ok(failed)),
                Attempt::Client(e) => return Err(Err(e)),
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
    ) -> Attempt {
        // The request's start is "now" enough for idle expiry: no clock read.
        let mut pooled = pool::take(addr, kind, ctx.start);
        loop {
            let (mut stream, reused) =
                match self.pooled_or_new(ctx, addr, kind.name, &mut pooled).await {
                    Ok(taken) => taken,
                    Err(Unconnected::TryAnother) => return Attempt::Again,
                    Err(Unconnected::Fail(status, error)) => {
                        return Attempt::Gave(Failed(status, error))
                    }
                };
            let mut received = false;
            let sent = send_and_read(conn, input, &mut stream, ctx, bufs, upload, &mut received);
            match sent.await {
                Ok(end) => return Attempt::Answered(stream, end),
                Err(Err(e)) => return Attempt::Client(e),
                // A pooled connection the backend had closed: an idempotent request whose
                // body is all here goes once more on a new one (as nginx and pingora retry).
                Err(Ok((kind, _)))
                    if reused
                        && !received
                        && !upload.streamed
                        && kind != io::ErrorKind::TimedOut
                        && req.method.is_idempotent() => {}
                Err(Ok((kind, error))) => {
                    let failed = Failed(io_status(kind), format!("{addr}: {error}"));
                    return Attempt::Failed(io_failure(kind), failed);
                }
            }
        }
    }
}

/// What one attempt at a backend came to.
enum Attempt {
    /// A response head, this long in `bufs.up`.
    Answered(UpstreamConn, usize),
    /// No response: how it failed, and what the client gets if it is not retried.
    Failed(Failure, Failed),
    /// No connection, and no retry: what the client gets.
    Gave(Failed),
    /// No connection; another backend is to be tried (the back-off waited).
    Again,
    /// The client's body failed.
    Client(UploadError),
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

/// Answers a request whose body could not be read or was refused (the connection closes);
/// `bytes_in` of it had been read and sent on.
async fn refuse_body(
    conn: &mut ClientConn,
    bufs: &mut Buffers,
    asking: &Asking<'_>,
    e: UploadError,
    (head_request, send): (bool, Option<std::time::Duration>),
    bytes_in: u64,
) -> Outcome {
    let (status, bytes_out) = match e.status() {
        None => (0, 0),
        Some(status) => {
            let out = &mut bufs.out;
            let answer = error_response(conn, out, status, asking, head_request, send);
            (status, answer.await)
        }
    };
    if status == 413 {
        crate::observe::metrics::metrics().deny(None, "body_too_large");
    }
    Outcome {
        status,
        bytes_in,
        bytes_out,
        keep: false,
        error: Some(e.to_string()),
    }
}
