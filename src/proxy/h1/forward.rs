//! A proxied request's exchange with its backend: pick a backend, send the request (on a pooled
//! connection, another backend after a failed connect, a new connection after a stale pooled
//! one), read the response header, pass interim responses on, then the response and its body.

use std::io;
use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::body::Body;
use super::request::{upstream_request, Request};
use super::response::{
    client_response_head, error_response, interim_head, io_status, read_response_head,
    response_head, with_response, Framing, MAX_INTERIM,
};
use super::{send_timeout, within, write_out, Buffers, ConnFacts, Outcome, UPSTREAM_BUF};
use crate::proxy::conn::ClientConn;
use crate::proxy::ctx::Ctx;
use crate::proxy::phases::ResponseEdits;
use crate::proxy::Proxy;
use crate::route::pool;
use crate::route::router::ProxyAction;

/// Body bytes sent in the same write as the response header.
const COALESCE: usize = 16 * 1024;

impl Proxy {
    /// Sends the request to a backend and its response to the client.
    pub(super) async fn proxy(
        &self,
        conn: &mut ClientConn,
        facts: &ConnFacts,
        request: &Request<'_, '_>,
        action: &ProxyAction,
        ctx: &mut Ctx,
        bufs: &mut Buffers,
    ) -> Outcome {
        let send = send_timeout(ctx);
        let req = request.req;
        let head_request = req.method == Method::HEAD;
        let options = action.upstream.options();
        let Buffers { out, up, .. } = bufs;
        let id = ctx.request_id.clone();
        let (mut stream, addr, mut end) =
            match self.exchange(request, action, ctx, facts, out, up).await {
                Ok(ok) => ok,
                Err((status, error)) => {
                    let sent = error_response(conn, out, status, id.as_bytes(), head_request, send);
                    return Outcome {
                        status,
                        bytes_out: sent.await,
                        keep: false,
                        error: Some(error),
                    };
                }
            };
        // Each response header is parsed once, into the header the client gets. Interim
        // responses (103 Early Hints, ...) go to the client as they come, as pingora-proxy
        // passes them.
        let edits = ResponseEdits::of(ctx, facts.tls.is_some());
        let asked_close = req.close || request.draining;
        let mut interim = 0;
        let mut received = true;
        let head = loop {
            out.clear();
            let parsed = with_response(&up[..end], |resp| {
                let head = response_head(resp, head_request)?;
                if head.status < 200 {
                    interim_head(out, resp);
                } else {
                    let close = asked_close || head.framing == Framing::UntilClose;
                    client_response_head(out, resp, head.framing, &edits, id.as_bytes(), close);
                }
                Some(head)
            });
            let checked = match parsed {
                Ok(Some(head)) if head.status == 101 => {
                    Err("101 to a request without Upgrade".to_owned())
                }
                Ok(Some(head)) if head.status < 200 && interim == MAX_INTERIM => {
                    Err("too many interim responses".to_owned())
                }
                Ok(Some(head)) => Ok(head),
                Ok(None) => Err("bad status or Content-Length".to_owned()),
                Err(e) => Err(e),
            };
            let head = match checked {
                Ok(head) => head,
                Err(error) => {
                    let sent = error_response(conn, out, 502, id.as_bytes(), head_request, send);
                    return Outcome {
                        status: 502,
                        bytes_out: sent.await,
                        keep: false,
                        error: Some(format!("{addr}: {error}")),
                    };
                }
            };
            if head.status >= 200 {
                break head;
            }
            interim += 1;
            if let Err(e) = write_out(conn, out, send).await {
                return Outcome {
                    status: head.status,
                    bytes_out: 0,
                    keep: false,
                    error: Some(format!("writing an interim response: {e}")),
                };
            }
            up.advance(end);
            let timeout = options.read_timeout;
            end = match read_response_head(&mut stream, up, timeout, &mut received).await {
                Ok(end) => end,
                Err((kind, error)) => {
                    let status = io_status(kind);
                    let sent = error_response(conn, out, status, id.as_bytes(), head_request, send);
                    return Outcome {
                        status,
                        bytes_out: sent.await,
                        keep: false,
                        error: Some(format!("{addr}: {error}")),
                    };
                }
            };
        };
        ctx.upstream_status = Some(head.status);
        let close = asked_close || head.framing == Framing::UntilClose;
        let cut = |sent, error: String| Outcome {
            status: head.status,
            bytes_out: sent,
            keep: false,
            error: Some(error),
        };
        up.advance(end);
        let mut body = Body::new(head.framing);
        let bad_framing = "bad chunked framing from the backend";
        let Ok((first, mut sent)) = body.take(up) else {
            return cut(0, bad_framing.into());
        };
        let written = if first <= COALESCE {
            out.extend_from_slice(&up[..first]);
            write_out(conn, out, send).await
        } else {
            match within(send, conn.write_all(out)).await {
                Ok(()) => write_out(conn, &up[..first], send).await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = written {
            return cut(0, format!("writing the response: {e}"));
        }
        let mut extra = up.len() > first;
        up.clear();
        while !body.is_done() {
            if up.capacity() < UPSTREAM_BUF {
                up.reserve(UPSTREAM_BUF);
            }
            match within(options.read_timeout, stream.read_buf(up)).await {
                Ok(0) if head.framing == Framing::UntilClose => break,
                Ok(0) => return cut(sent, "backend closed mid-body".into()),
                Ok(_) => {}
                Err(e) => return cut(sent, format!("reading the response body: {e}")),
            }
            let Ok((n, payload)) = body.take(up) else {
                return cut(sent, bad_framing.into());
            };
            extra |= up.len() > n;
            if let Err(e) = write_out(conn, &up[..n], send).await {
                return cut(sent, format!("writing the response: {e}"));
            }
            sent += payload;
            up.clear();
        }
        if head.keepalive && !extra {
            pool::put(addr, stream, options.idle_timeout, ctx.start);
        }
        Outcome {
            status: head.status,
            bytes_out: sent,
            keep: !close,
            error: None,
        }
    }

    /// Sends the request in `out` to a backend (another after a failed connect, a new
    /// connection after a stale pooled one) and reads the response header into `up`: its
    /// length.
    async fn exchange(
        &self,
        request: &Request<'_, '_>,
        action: &ProxyAction,
        ctx: &mut Ctx,
        facts: &ConnFacts,
        out: &mut Vec<u8>,
        up: &mut BytesMut,
    ) -> Result<(TcpStream, SocketAddr, usize), (u16, String)> {
        let (req, parsed) = (request.req, request.parsed);
        let options = action.upstream.options();
        'backends: loop {
            let header = |name: &http::HeaderName| {
                parsed
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name.as_str()))
                    .map(|h| h.value)
            };
            let addr = self
                .pick_backend(action, ctx, req.path, header)
                .map_err(|e| (502, e.to_string()))?;
            // The request is written once the backend is known (its Host may be its own).
            upstream_request(out, request, action, ctx, facts);
            // The request's start is "now" enough for idle expiry: no clock read.
            let mut pooled = pool::take(addr, ctx.start);
            loop {
                let reused = pooled.is_some();
                let mut stream = match pooled.take() {
                    Some(stream) => stream,
                    None => match pool::connect(addr, options.connection_timeout).await {
                        Ok(stream) => stream,
                        Err(e) => {
                            if self.connect_failed(ctx, addr) {
                                continue 'backends;
                            }
                            return Err((io_status(e.kind()), format!("connect to {addr}: {e}")));
                        }
                    },
                };
                up.clear();
                let mut received = false;
                let sent = within(options.write_timeout, stream.write_all(out)).await;
                let result = match sent {
                    Ok(()) => {
                        let timeout = options.read_timeout;
                        read_response_head(&mut stream, up, timeout, &mut received).await
                    }
                    Err(e) => Err((e.kind(), format!("writing the request: {e}"))),
                };
                match result {
                    Ok(head) => return Ok((stream, addr, head)),
                    // A pooled connection the backend had closed: an idempotent request goes
                    // once more on a new one (as pingora-proxy and nginx retry).
                    Err((kind, _))
                        if reused
                            && !received
                            && kind != io::ErrorKind::TimedOut
                            && req.method.is_idempotent() =>
                    {
                        continue;
                    }
                    Err((kind, error)) => {
                        return Err((io_status(kind), format!("{addr}: {error}")))
                    }
                }
            }
        }
    }
}
