//! A proxied request's exchange with its backend: pick a backend, send the request head and
//! body (on a pooled connection, another backend after a failed connect, a new connection after
//! a stale pooled one), read the response header, pass interim responses on, then hand the
//! final response to `relay` (or the connection to `tunnel` after `101 Switching Protocols`).

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;

use super::own::{error_response, io_status};
use super::relay::Relay;
use super::request::{upstream_request, Request};
use super::upload::{Upload, UploadError};
use super::{send_timeout, Buffers, Outcome};
use crate::proxy::conn::{ClientConn, ConnFacts};
use crate::proxy::ctx::Ctx;
use crate::proxy::http1::read_response_head;
use crate::proxy::phases::{Failure, Unconnected};
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
        let upgrade = request.req.upgrade.is_some();
        ctx.ask_compression(head_request, upgrade, |name| {
            let headers = request.parsed.headers.iter();
            let mut found = headers.filter(|h| h.name.eq_ignore_ascii_case(name));
            found.next().map(|h| h.value)
        });
        if request.req.version == 0 {
            ctx.refuse_compression(Skip::Http10);
        }
        let id = ctx.request_id.clone();
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
                return self
                    .refuse_body(conn, bufs, &id, e, head_request, send)
                    .await
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
            Err(Failed::Backend(Failure { status, error })) => {
                let out = &mut bufs.out;
                let sent = error_response(conn, out, status, id.as_bytes(), head_request, send);
                let mut outcome = failed(status, error, upload.payload);
                outcome.bytes_out = sent.await;
                return outcome;
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
        let body_timeout = policy.unwrap_or(std::time::Duration::from_secs(60));
        let send = send_timeout(ctx);
        let Buffers { out, up } = bufs;
        'backends: loop {
            let header = |name: &http::HeaderName| {
                parsed
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name.as_str()))
                    .map(|h| h.value)
            };
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
                up.clear();
                let mut received = false;
                let sent = within(options.write_timeout, stream.send_all(out)).await;
                let result = match sent {
                    Ok(()) => {
                        let rest = upload.send_rest(
                            conn,
                            input,
                            &mut stream,
                            body_timeout,
                            options.write_timeout,
                            send,
                        );
                        match rest.await {
                            Ok(()) => {
                                let timeout = options.read_timeout;
                                read_response_head(&mut stream, up, timeout, &mut received).await
                            }
                            Err(UploadError::Backend(e)) if !upload.streamed => {
                                Err((e.kind(), format!("writing the request: {e}")))
                            }
                            Err(e) => return Err(Failed::Body(e)),
                        }
                    }
                    Err(e) => Err((e.kind(), format!("writing the request: {e}"))),
                };
                match result {
                    Ok(head) => return Ok((stream, addr, head)),
                    // A pooled connection the backend had closed: an idempotent request whose
                    // body is all here goes once more on a new one (as nginx and pingora
                    // retry).
                    Err((kind, _))
                        if reused
                            && !received
                            && !upload.streamed
                            && kind != io::ErrorKind::TimedOut
                            && req.method.is_idempotent() =>
                    {
                        continue;
                    }
                    Err((kind, error)) => {
                        return Err(Failed::Backend(Failure::new(
                            io_status(kind),
                            format!("{addr}: {error}"),
                        )))
                    }
                }
            }
        }
    }
}
