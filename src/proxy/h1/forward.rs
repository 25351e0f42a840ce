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
    with_response, Framing, ResponseHead, MAX_INTERIM,
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
        let (mut stream, addr, mut head) =
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
        // Interim responses (103 Early Hints, ...) go to the client as they come, as
        // pingora-proxy passes them.
        let mut interim = 0;
        let mut received = true;
        while head.status < 200 {
            interim += 1;
            let forwarded = if interim > MAX_INTERIM {
                Err("too many interim responses".to_owned())
            } else {
                out.clear();
                with_response(&up[..head.len], |resp| interim_head(out, resp))
            };
            if let Err(error) = forwarded {
                let sent = error_response(conn, out, 502, id.as_bytes(), head_request, send);
                return Outcome {
                    status: 502,
                    bytes_out: sent.await,
                    keep: false,
                    error: Some(error),
                };
            }
            if let Err(e) = write_out(conn, out, send).await {
                return Outcome {
                    status: head.status,
                    bytes_out: 0,
                    keep: false,
                    error: Some(format!("writing an interim response: {e}")),
                };
            }
            up.advance(head.len);
            let timeout = options.read_timeout;
            head = match read_response_head(&mut stream, up, timeout, head_request, &mut received)
                .await
            {
                Ok(head) => head,
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
        }
        ctx.upstream_status = Some(head.status);
        // The response header for the client, then the body as it comes.
        let close = req.close || request.draining || head.framing == Framing::UntilClose;
        let cut = |sent, error: String| Outcome {
            status: head.status,
            bytes_out: sent,
            keep: false,
            error: Some(error),
        };
        out.clear();
        let edits = ResponseEdits::of(ctx, facts.tls.is_some());
        let id = ctx.request_id.as_bytes();
        let written = with_response(&up[..head.len], |resp| {
            client_response_head(out, resp, head.framing, &edits, id, close)
        });
        if let Err(e) = written {
            // Parsed the same way by read_response_head: cannot fail here.
            return cut(0, e);
        }
        up.advance(head.len);
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
            pool::put(addr, stream, options.idle_timeout);
        }
        Outcome {
            status: head.status,
            bytes_out: sent,
            keep: !close,
            error: None,
        }
    }

    /// Sends the request in `out` to a backend (another after a failed connect, a new
    /// connection after a stale pooled one) and reads the response header into `up`.
    async fn exchange(
        &self,
        request: &Request<'_, '_>,
        action: &ProxyAction,
        ctx: &mut Ctx,
        facts: &ConnFacts,
        out: &mut Vec<u8>,
        up: &mut BytesMut,
    ) -> Result<(TcpStream, SocketAddr, ResponseHead), (u16, String)> {
        let (req, parsed) = (request.req, request.parsed);
        let options = action.upstream.options();
        let head_request = req.method == Method::HEAD;
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
            let mut pooled = pool::take(addr);
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
                        read_response_head(&mut stream, up, timeout, head_request, &mut received)
                            .await
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
