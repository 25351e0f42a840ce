//! A proxied request's exchange with its backend: pick a backend, send the request head and
//! body (on a pooled connection, another backend after a failed connect, a new connection after
//! a stale pooled one), read the response header, pass interim responses on, then hand the
//! final response to `relay` (or the connection to `tunnel` after `101 Switching Protocols`).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use pingora::upstreams::peer::PeerOptions;

use super::own::{error_response, io_status};
use super::relay::Relay;
use super::request::{upstream_request, Request};
use super::upload::{Upload, UploadError};
use super::{send_timeout, Buffers, Outcome};
use crate::proxy::conn::{ClientConn, ConnFacts};
use crate::proxy::ctx::Ctx;
use crate::proxy::http1::read_response_head;
use crate::proxy::phases::{pool_kind, Failure, Try, Unconnected};
use crate::proxy::timed::within;
use crate::proxy::Proxy;
use crate::route::pool::{self, Kind};
use crate::route::router::ProxyAction;
use crate::route::upstream_conn::UpstreamConn;
use crate::semantics::coding::Skip;

/// Why no response came from a backend.
enum Failed {
    /// No backend answered.
    Backend(Failure),
    /// The client's body could not be read, or was refused.
    Body(UploadError),
}

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
        ask_compression(ctx, request);
        let id = ctx.request_id.clone();
        let max_body = ctx
            .site
            .and_then(|i| ctx.snapshot.as_ref()?.site_policy(i))
            .map_or(u64::MAX, |s| s.max_body_bytes);
        let req = request.req;
        let upload = Upload::new(req.body, input, max_body, req.expect_continue);
        let mut upload = match upload {
            Ok(upload) => upload,
            Err(e) => {
                return self
                    .refuse_body(conn, bufs, &id, e, head_request, send)
                    .await
            }
        };
        let kind = pool_kind(action, request.req.host.as_str());
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
            Err(Failed::Backend(Failure { status, error })) => {
                let out = &mut bufs.out;
                let sent = error_response(conn, out, status, id.as_bytes(), head_request, send);
                return Outcome {
                    status,
                    bytes_in: upload.payload,
                    bytes_out: sent.await,
                    keep: false,
                    error: Some(error),
                };
            }
            Err(Failed::Body(e)) => {
                return self
                    .refuse_body(conn, bufs, &id, e, head_request, send)
                    .await
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

    /// Answers a request whose body could not be read or was refused (the connection closes).
    async fn refuse_body(
        &self,
        conn: &mut ClientConn,
        bufs: &mut Buffers,
        id: &http::HeaderValue,
        e: UploadError,
        head_request: bool,
        send: Option<std::time::Duration>,
    ) -> Outcome {
        let (status, bytes_out) = match e.status() {
            None => (0, 0),
            Some(status) => {
                let out = &mut bufs.out;
                let answer = error_response(conn, out, status, id.as_bytes(), head_request, send);
                (status, answer.await)
            }
        };
        if status == 413 {
            crate::observe::metrics::metrics().deny(None, "body_too_large");
        }
        Outcome {
            status,
            bytes_in: 0,
            bytes_out,
            keep: false,
            error: Some(e.to_string()),
        }
    }

    /// Sends the request (head, then body) to a backend (another after a failed connect, a new
    /// connection after a stale pooled one) and reads the response header into `bufs.up`: its
    /// length.
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
    ) -> Result<(UpstreamConn, SocketAddr, usize), Failed> {
        let (req, parsed) = (request.req, request.parsed);
        let options = action.upstream.options();
        let policy = ctx.snapshot.as_ref().map(|s| s.policy.body_read_timeout);
        let timeouts = (
            options,
            policy.unwrap_or(Duration::from_secs(60)),
            send_timeout(ctx),
        );
        let Buffers { out, up } = bufs;
        'backends: loop {
            let header = |name: &http::HeaderName| field(parsed, name);
            let addr = self
                .pick_backend(action, ctx, req.target.path(), header)
                .map_err(|e| Failed::Backend(Failure::new(502, e.to_string())))?;
            upstream_request(out, request, action, ctx, facts);
            out.extend_from_slice(&upload.staged);
            // The request's start is "now" enough for idle expiry: no clock read.
            let mut pooled = pool::take(addr, kind, ctx.start);
            loop {
                let reused = pooled.is_some();
                let mut stream = match pooled.take() {
                    Some(stream) => stream,
                    None => match self.connect_backend(ctx, action, addr, kind.name).await {
                        Ok(stream) => stream,
                        Err(Unconnected::TryAnother) => continue 'backends,
                        Err(Unconnected::Fail(failure)) => return Err(Failed::Backend(failure)),
                    },
                };
                let sent = try_once(&mut stream, (out, up), (conn, input), upload, timeouts);
                match sent.await {
                    Ok(head) => return Ok((stream, addr, head)),
                    // An idempotent request whose body is all here goes once more on a new
                    // connection.
                    Err(e) if e.stale(reused) && !upload.streamed && req.method.is_idempotent() => {
                        continue
                    }
                    Err(Try::Broken { kind, error, .. }) => {
                        let error = format!("{addr}: {error}");
                        return Err(Failed::Backend(Failure::new(io_status(kind), error)));
                    }
                    Err(Try::Failed(failed)) => return Err(failed),
                }
            }
        }
    }
}

/// Writes the request on `stream` (`out`: its head and the body read so far; the rest comes from
/// the client) and reads the response head into `up`: its length.
async fn try_once(
    stream: &mut UpstreamConn,
    (out, up): (&[u8], &mut BytesMut),
    (conn, input): (&mut ClientConn, &mut BytesMut),
    upload: &mut Upload,
    (options, body_timeout, send): (&PeerOptions, Duration, Option<Duration>),
) -> Result<usize, Try<Failed>> {
    let broken = |e: io::Error| Try::Broken {
        kind: e.kind(),
        error: format!("writing the request: {e}"),
        received: false,
    };
    up.clear();
    within(options.write_timeout, stream.send_all(out))
        .await
        .map_err(broken)?;
    let rest = upload.send_rest(
        conn,
        input,
        stream,
        body_timeout,
        options.write_timeout,
        send,
    );
    match rest.await {
        Ok(()) => {}
        Err(UploadError::Backend(e)) if !upload.streamed => return Err(broken(e)),
        Err(e) => return Err(Try::Failed(Failed::Body(e))),
    }
    let mut received = false;
    let read = read_response_head(stream, up, options.read_timeout, &mut received).await;
    read.map_err(|(kind, error)| Try::Broken {
        kind,
        error,
        received,
    })
}

/// The first field `name` of a parsed request head.
fn field<'h>(parsed: &httparse::Request<'_, 'h>, name: &http::HeaderName) -> Option<&'h [u8]> {
    let mut fields = parsed.headers.iter();
    let named = fields.find(|h| h.name.eq_ignore_ascii_case(name.as_str()));
    named.map(|h| h.value)
}

/// Notes what the client accepts, for the response's compression (none for HTTP/1.0 clients).
fn ask_compression(ctx: &mut Ctx, request: &Request<'_>) {
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
}
