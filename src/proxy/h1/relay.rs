//! A backend's final response on its way to the client: the header (the backend's, edited), then
//! the body with its framing followed as it passes. A body the backend ends by closing goes to an
//! HTTP/1.1 client chunked, so that a backend failing mid-body reaches the client as a truncated
//! body, never as a complete one; a body cut off in any framing leaves the client's framing
//! unfinished and closes the connection. A `101` answering an upgrade request hands both
//! connections to `tunnel`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncReadExt;

use super::encoded::Encoded;
use super::own::error_response;
use super::request::Request;
use super::response::{client_response_head, final_head, upgrade_head, Persist};
use super::{write_out, Buffers, Outcome};
use crate::proxy::conn::{ClientConn, ConnFacts};
use crate::proxy::ctx::Ctx;
use crate::proxy::http1::{push_body, Body, Framing, ResponseHead, UPSTREAM_BUF};
use crate::proxy::response_edits::ResponseEdits;
use crate::proxy::timed::within;
use crate::route::pool::{self, Kind};
use crate::route::upstream_conn::UpstreamConn;

/// Body bytes sent in the same write as the response header.
const COALESCE: usize = 16 * 1024;

/// One response to relay.
pub(super) struct Relay<'a, 'r> {
    pub(super) request: &'a Request<'r>,
    pub(super) ctx: &'a mut Ctx,
    pub(super) facts: &'a ConnFacts,
    pub(super) addr: SocketAddr,
    /// Plain, or TLS for a name: where the connection goes back in the pool.
    pub(super) kind: Kind<'a>,
    pub(super) send: Option<Duration>,
    pub(super) bytes_in: u64,
}

impl Relay<'_, '_> {
    /// Reads the rest of the response from `stream` (its first `end` bytes, in `bufs.up`, are the
    /// first head) and writes it to the client.
    pub(super) async fn run(
        self,
        conn: &mut ClientConn,
        mut stream: UpstreamConn,
        end: usize,
        bufs: &mut Buffers,
        input: &mut BytesMut,
    ) -> Outcome {
        let req = self.request.req;
        let id = self.ctx.request_id.clone();
        let head_request = req.method == http::Method::HEAD;
        let (read_timeout, idle_timeout) = self.ctx.backend_timeouts();
        let edits = ResponseEdits::of(self.ctx, self.facts.tls.is_some());
        let asked_close = req.close || self.request.draining;
        let http10 = req.version == 0;
        let upgrading = req.upgrade.is_some();
        let mut persist = Persist::Close;
        let mut compression = None;
        let ctx = &*self.ctx;
        let Buffers { out, up } = bufs;
        let head = final_head(
            conn,
            &mut stream,
            up,
            out,
            end,
            (read_timeout, self.send),
            head_request,
            |out, resp, head| {
                if head.status == 101 {
                    upgrade_head(out, resp, id.as_bytes());
                    return;
                }
                let fields = resp.headers.iter().map(|h| (h.name, h.value));
                compression = ctx.compression_for(head.status, fields);
                let edits = edits.compressed(compression.as_ref().map(|c| c.0));
                // A compressed body's length is known at its end only: chunked, or until close.
                let framing = match edits.coding {
                    Some(_) => Framing::UntilClose,
                    None => head.framing,
                };
                let rechunk = !http10;
                let close = asked_close || (framing == Framing::UntilClose && !rechunk);
                persist = match close {
                    true => Persist::Close,
                    false => Persist::KeepAlive { http10 },
                };
                let id = id.as_bytes();
                client_response_head(out, resp, framing, rechunk, &edits, id, persist);
            },
        )
        .await;
        let fail = |status: u16, bytes_out: usize, error: String| Outcome {
            status,
            bytes_in: self.bytes_in,
            bytes_out,
            keep: false,
            error: Some(format!("{}: {error}", self.addr)),
        };
        let (head, end) = match head {
            Ok((head, _)) if head.status == 101 && !upgrading => {
                let asking = self.request.asking(self.ctx);
                let sent = error_response(conn, out, 502, &asking, head_request, self.send).await;
                return fail(502, sent, "101 to a request without Upgrade".into());
            }
            Ok(ok) => ok,
            Err((0, error)) => return fail(0, 0, error),
            Err((status, error)) => {
                let asking = self.request.asking(self.ctx);
                let sent = error_response(conn, out, status, &asking, head_request, self.send);
                return fail(status, sent.await, error);
            }
        };
        self.ctx.answered(head.status);
        self.ctx.note_compression(compression.as_ref().map(|c| c.0));
        up.advance(end);
        if let Some(encoder) = compression.and_then(|c| c.1) {
            let encoded = Encoded {
                body: Body::new(head.framing),
                framing: head.framing,
                chunked: !http10,
                read_timeout,
                send: self.send,
            };
            let keep = persist != Persist::Close;
            return match encoded.run(conn, &mut stream, out, up, encoder).await {
                Ok((sent, extra)) => {
                    self.finish(stream, &head, extra, idle_timeout);
                    Outcome {
                        status: head.status,
                        bytes_in: self.bytes_in,
                        bytes_out: sent,
                        keep,
                        error: None,
                    }
                }
                Err((sent, error)) => fail(head.status, sent, error),
            };
        }
        if head.status == 101 {
            let bytes = super::tunnel::run(conn, stream, out, up, input, self.send).await;
            return Outcome {
                status: 101,
                bytes_in: self.bytes_in + bytes.0,
                bytes_out: bytes.1 as usize,
                keep: false,
                error: bytes.2,
            };
        }
        let rechunk = head.framing == Framing::UntilClose && !http10;
        let mut body = Body::new(head.framing);
        let Ok((first, mut sent)) = body.take(up) else {
            // Nothing of this response reached the client yet: it gets a 502.
            let asking = self.request.asking(self.ctx);
            let sent = error_response(conn, out, 502, &asking, head_request, self.send).await;
            return fail(502, sent, "bad chunked framing from the backend".into());
        };
        let cut = |sent, error: String| fail(head.status, sent, error);
        push_body(out, &up[..first.min(COALESCE)], rechunk);
        let written = match write_out(conn, out, self.send).await {
            Ok(()) if first > COALESCE => {
                out.clear();
                push_body(out, &up[COALESCE..first], rechunk);
                write_out(conn, out, self.send).await
            }
            other => other,
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
            match within(read_timeout, stream.read_buf(up)).await {
                Ok(0) if head.framing == Framing::UntilClose => break,
                Ok(0) => return cut(sent, "backend closed mid-body".into()),
                Ok(_) => {}
                Err(e) => return cut(sent, format!("reading the response body: {e}")),
            }
            let Ok((n, payload)) = body.take(up) else {
                return cut(sent, "bad chunked framing from the backend".into());
            };
            extra |= up.len() > n;
            let chunk = if rechunk {
                out.clear();
                push_body(out, &up[..n], true);
                &out[..]
            } else {
                &up[..n]
            };
            if let Err(e) = write_out(conn, chunk, self.send).await {
                return cut(sent, format!("writing the response: {e}"));
            }
            sent += payload;
            up.clear();
        }
        if rechunk {
            if let Err(e) = write_out(conn, b"0\r\n\r\n", self.send).await {
                return cut(sent, format!("writing the response: {e}"));
            }
        }
        self.finish(stream, &head, extra, idle_timeout);
        Outcome {
            status: head.status,
            bytes_in: self.bytes_in,
            bytes_out: sent,
            keep: persist != Persist::Close,
            error: None,
        }
    }

    fn finish(
        &self,
        stream: UpstreamConn,
        head: &ResponseHead,
        extra: bool,
        idle: Option<Duration>,
    ) {
        if head.keepalive && !extra {
            pool::put(self.addr, self.kind, stream, idle, self.ctx.start);
        }
    }
}
