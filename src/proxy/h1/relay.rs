//! A backend's final response on its way to the client: the header (the backend's, edited), then
//! the body with its framing followed as it passes. A body the backend ends by closing goes to an
//! HTTP/1.1 client chunked, so that a backend failing mid-body reaches the client as a truncated
//! body, never as a complete one; a body cut off in any framing leaves the client's framing
//! unfinished and closes the connection. A `101` answering an upgrade request hands both
//! connections to `tunnel`. Each read of the body waits at most the route's `idle_timeout`, and
//! the whole exchange ends at its `total_timeout`: a body cut there is cut as any other.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncReadExt;

use super::encoded::Encoded;
use super::own::error_response;
use super::request::Request;
use super::response::{client_response_head, final_head, upgrade_head, Persist};
use super::{write_out, Buffers, Outcome};
use crate::proxy::attempts::{limit, Unanswered};
use crate::proxy::cache::Tee;
use crate::proxy::conn::{ClientConn, ConnFacts};
use crate::proxy::ctx::Ctx;
use crate::proxy::encoder::Encoder;
use crate::proxy::hit::Hit;
use crate::proxy::http1::{push_body, Body, Framing, ResponseHead, UPSTREAM_BUF};
use crate::proxy::response_edits::ResponseEdits;
use crate::proxy::timed::within;
use crate::route::pool::{self, Kind};
use crate::route::upstream_conn::UpstreamConn;
use crate::semantics::coding::Decision;

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

/// The final head as the client got it.
struct Sent {
    head: ResponseHead,
    persist: Persist,
    compression: Option<(Decision, Option<Encoder>)>,
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
        let mut tee = Tee::take(self.ctx);
        let sent = match self.head(conn, &mut stream, end, bufs, &mut tee).await {
            Ok(sent) => sent,
            Err(outcome) => return outcome,
        };
        if let Some(hit) = tee.instead(self.ctx) {
            return self
                .answer_stored(conn, stream, &sent.head, bufs, &hit)
                .await;
        }
        let Sent {
            head,
            persist,
            compression,
        } = sent;
        self.ctx.answered(head.status);
        self.ctx.note_compression(compression.as_ref().map(|c| c.0));
        if let Some(encoder) = compression.and_then(|c| c.1) {
            return self
                .encoded(conn, stream, &head, bufs, encoder, persist, tee)
                .await;
        }
        if head.status == 101 {
            let (out, up) = (&mut bufs.out, &mut bufs.up);
            let bytes = super::tunnel::run(conn, stream, out, up, input, self.send).await;
            return Outcome {
                status: Some(101),
                bytes_in: self.bytes_in + bytes.0,
                bytes_out: bytes.1 as usize,
                keep: false,
                error: bytes.2,
            };
        }
        self.body(conn, stream, &head, bufs, persist, tee).await
    }

    /// Reads the final head (interim ones go to the client as they come) and writes it, edited,
    /// into `bufs.out`, taking it off `bufs.up`; `Err` is the outcome of a bad or missing one.
    async fn head(
        &self,
        conn: &mut ClientConn,
        stream: &mut UpstreamConn,
        end: usize,
        bufs: &mut Buffers,
        tee: &mut Tee,
    ) -> Result<Sent, Outcome> {
        let req = self.request.req;
        let head_request = req.method == http::Method::HEAD;
        let mut writer = HeadWriter {
            ctx: self.ctx,
            edits: ResponseEdits::of(self.ctx, self.facts.tls.is_some()),
            close: req.close || self.request.draining,
            http10: req.version == 0,
            persist: Persist::Close,
            compression: None,
        };
        let Buffers { out, up } = bufs;
        let limits = (self.ctx.first_byte_limit(), self.send);
        let head = final_head(
            conn,
            stream,
            up,
            out,
            end,
            limits,
            head_request,
            |o, r, h| writer.write(o, r, h),
        );
        let unanswered = match head.await {
            Ok((head, _)) if head.status == 101 && req.upgrade.is_none() => {
                Unanswered::answer(502, "101 to a request without Upgrade")
            }
            Ok((head, end)) => {
                tee.head(&up[..end]);
                up.advance(end);
                return Ok(Sent {
                    head,
                    persist: writer.persist,
                    compression: writer.compression,
                });
            }
            Err(unanswered) => unanswered,
        };
        let Some(status) = unanswered.status else {
            return Err(self.fail(None, 0, unanswered.error));
        };
        let asking = self.request.asking(self.ctx);
        let sent = error_response(conn, out, status, &asking, head_request, self.send);
        Err(self.fail(Some(status), sent.await, unanswered.error))
    }

    /// Answers with a stored response in place of the backend's (a `304` that refreshed it, or
    /// a failure it stands in for); the backend's connection goes back to the pool when its
    /// response had no body.
    async fn answer_stored(
        &self,
        conn: &mut ClientConn,
        stream: UpstreamConn,
        head: &ResponseHead,
        bufs: &mut Buffers,
        hit: &Hit,
    ) -> Outcome {
        if head.framing == Framing::None {
            self.finish(stream, head, false);
        }
        let (facts, request) = (self.facts, self.request);
        let mut outcome = super::cached::write_hit(conn, facts, request, self.ctx, bufs, hit).await;
        outcome.bytes_in = self.bytes_in;
        outcome
    }

    /// Sends the head in `bufs.out` and the body compressed (stored as it came when `tee`
    /// stores it).
    #[allow(clippy::too_many_arguments)]
    async fn encoded(
        &self,
        conn: &mut ClientConn,
        mut stream: UpstreamConn,
        head: &ResponseHead,
        bufs: &mut Buffers,
        encoder: Encoder,
        persist: Persist,
        mut tee: Tee,
    ) -> Outcome {
        let encoded = Encoded {
            body: Body::new(head.framing),
            framing: head.framing,
            chunked: self.request.req.version != 0,
            idle: self.ctx.timeouts().idle,
            deadline: self.ctx.deadline(),
            send: self.send,
        };
        let (out, up) = (&mut bufs.out, &mut bufs.up);
        match encoded
            .run(conn, &mut stream, out, up, encoder, &mut tee)
            .await
        {
            Ok((sent, extra)) => {
                tee.finish(self.ctx);
                self.finish(stream, head, extra);
                self.done(head.status, sent, persist)
            }
            Err((sent, error)) => self.fail(Some(head.status), sent, error),
        }
    }

    /// Sends the head in `bufs.out` with the body's first bytes, then the rest as it comes.
    async fn body(
        &self,
        conn: &mut ClientConn,
        mut stream: UpstreamConn,
        head: &ResponseHead,
        bufs: &mut Buffers,
        persist: Persist,
        mut tee: Tee,
    ) -> Outcome {
        let rechunk = head.framing == Framing::UntilClose && self.request.req.version != 0;
        let mut body = Body::new(head.framing);
        let Buffers { out, up } = bufs;
        let Ok((first, sent)) = body.take_with(up, |r| tee.data(&up[r])) else {
            // Nothing of this response reached the client yet: it gets a 502.
            let asking = self.request.asking(self.ctx);
            let head_request = self.request.req.method == http::Method::HEAD;
            let sent = error_response(conn, out, 502, &asking, head_request, self.send);
            let error = "bad chunked framing from the backend".into();
            return self.fail(Some(502), sent.await, error);
        };
        if let Err(e) = self.first(conn, out, &up[..first], rechunk).await {
            let error = format!("writing the response: {e}");
            return self.fail(Some(head.status), 0, error);
        }
        let extra = up.len() > first;
        up.clear();
        let pass = Pass {
            body,
            framing: head.framing,
            rechunk,
            sent,
            extra,
        };
        match self.rest(conn, &mut stream, out, up, pass, &mut tee).await {
            Ok((sent, extra)) => {
                tee.finish(self.ctx);
                self.finish(stream, head, extra);
                self.done(head.status, sent, persist)
            }
            Err((sent, error)) => self.fail(Some(head.status), sent, error),
        }
    }

    /// Writes the head in `out` with the body's first bytes (`first`), coalesced up to
    /// `COALESCE`.
    async fn first(
        &self,
        conn: &mut ClientConn,
        out: &mut Vec<u8>,
        first: &[u8],
        rechunk: bool,
    ) -> std::io::Result<()> {
        push_body(out, &first[..first.len().min(COALESCE)], rechunk);
        write_out(conn, out, self.send).await?;
        if first.len() > COALESCE {
            out.clear();
            push_body(out, &first[COALESCE..], rechunk);
            write_out(conn, out, self.send).await?;
        }
        Ok(())
    }

    /// Passes the rest of the body from `stream` to the client, each read within the route's
    /// idle timeout and all of it within its total timeout; the payload bytes sent and whether
    /// the backend sent more than the body, or those bytes and why it broke off (the client's
    /// framing left unfinished).
    async fn rest(
        &self,
        conn: &mut ClientConn,
        stream: &mut UpstreamConn,
        out: &mut Vec<u8>,
        up: &mut BytesMut,
        mut pass: Pass,
        tee: &mut Tee,
    ) -> Result<(usize, bool), (usize, String)> {
        let (idle, deadline) = (self.ctx.timeouts().idle, self.ctx.deadline());
        while !pass.body.is_done() {
            if up.capacity() < UPSTREAM_BUF {
                up.reserve(UPSTREAM_BUF);
            }
            match within(limit(idle, deadline), stream.read_buf(up)).await {
                Ok(0) if pass.framing == Framing::UntilClose => break,
                Ok(0) => return Err((pass.sent, "backend closed mid-body".into())),
                Ok(_) => {}
                Err(e) => return Err((pass.sent, format!("reading the response body: {e}"))),
            }
            let Ok((n, payload)) = pass.body.take_with(up, |r| tee.data(&up[r])) else {
                return Err((pass.sent, "bad chunked framing from the backend".into()));
            };
            pass.extra |= up.len() > n;
            let chunk = if pass.rechunk {
                out.clear();
                push_body(out, &up[..n], true);
                &out[..]
            } else {
                &up[..n]
            };
            if let Err(e) = write_out(conn, chunk, self.send).await {
                return Err((pass.sent, format!("writing the response: {e}")));
            }
            pass.sent += payload;
            up.clear();
        }
        if pass.rechunk {
            if let Err(e) = write_out(conn, b"0\r\n\r\n", self.send).await {
                return Err((pass.sent, format!("writing the response: {e}")));
            }
        }
        Ok((pass.sent, pass.extra))
    }

    fn done(&self, status: u16, bytes_out: usize, persist: Persist) -> Outcome {
        Outcome {
            status: Some(status),
            bytes_in: self.bytes_in,
            bytes_out,
            keep: persist != Persist::Close,
            error: None,
        }
    }

    fn fail(&self, status: Option<u16>, bytes_out: usize, error: String) -> Outcome {
        Outcome {
            status,
            bytes_in: self.bytes_in,
            bytes_out,
            keep: false,
            error: Some(format!("{}: {error}", self.addr)),
        }
    }

    fn finish(&self, stream: UpstreamConn, head: &ResponseHead, extra: bool) {
        if head.keepalive && !extra {
            let (_, idle) = self.ctx.backend_timeouts();
            pool::put(self.addr, self.kind, stream, idle, self.ctx.start);
        }
    }
}

/// Writes the client's head of the backend's final one (with the site's edits, compressed
/// where the site compresses), noting what it decided.
struct HeadWriter<'a> {
    ctx: &'a Ctx,
    edits: ResponseEdits<'a>,
    /// The client asked to close, or the server is draining.
    close: bool,
    http10: bool,
    persist: Persist,
    compression: Option<(Decision, Option<Encoder>)>,
}

impl HeadWriter<'_> {
    fn write(&mut self, out: &mut Vec<u8>, resp: &httparse::Response<'_, '_>, head: &ResponseHead) {
        let id = self.ctx.request_id.as_bytes();
        if head.status == 101 {
            upgrade_head(out, resp, id);
            return;
        }
        let fields = resp.headers.iter().map(|h| (h.name, h.value));
        self.compression = self.ctx.compression_for(head.status, fields);
        let edits = self
            .edits
            .compressed(self.compression.as_ref().map(|c| c.0));
        // A compressed body's length is known at its end only: chunked, or until close.
        let framing = match edits.coding {
            Some(_) => Framing::UntilClose,
            None => head.framing,
        };
        let rechunk = !self.http10;
        let close = self.close || (framing == Framing::UntilClose && !rechunk);
        self.persist = match close {
            true => Persist::Close,
            false => Persist::KeepAlive {
                http10: self.http10,
            },
        };
        client_response_head(out, resp, framing, rechunk, &edits, id, self.persist);
    }
}

/// A body on its way: how it is framed both ways, what was sent, whether the backend sent
/// more than it.
struct Pass {
    body: Body,
    framing: Framing,
    rechunk: bool,
    sent: usize,
    extra: bool,
}
