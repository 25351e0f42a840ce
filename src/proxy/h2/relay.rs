//! An HTTP/1 backend's response on its way to an HTTP/2 client: the head (interim ones
//! skipped) turned into HTTP/2 fields by the same edits as for an HTTP/1 client, the body's
//! payload (chunk framing taken off) sent as DATA frames as the client's window allows, the
//! backend connection back to the pool when the body ended well. A body the backend breaks off
//! resets the stream: the client never sees it complete, whether it broke or the route's
//! `idle_timeout` or `total_timeout` cut it.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Reason, SendStream};
use tokio::io::AsyncReadExt;

use super::answer::Outcome;
use super::stored::client_head;
use crate::proxy::attempts::{limit, Unanswered};
use crate::proxy::cache::Tee;
use crate::proxy::conn::ConnFacts;
use crate::proxy::ctx::Ctx;
use crate::proxy::encoder::{Coded, Encoder};
use crate::proxy::hit::Hit;
use crate::proxy::http1::{
    read_response_head, response_head, with_response, Body, Framing, ResponseHead, MAX_INTERIM,
    UPSTREAM_BUF,
};
use crate::proxy::http2::send_data;
use crate::proxy::own::io_status;
use crate::proxy::response_edits::ResponseEdits;
use crate::proxy::timed::within;
use crate::route::pool::{self, Kind};
use crate::route::upstream_conn::UpstreamConn;
use crate::semantics::coding::Decision;

/// One response to relay to an HTTP/2 client.
pub(super) struct Relay<'a> {
    /// The request's fields and Host name, for an error answer (`proxy::own`).
    pub(super) parts: &'a http::request::Parts,
    pub(super) host: &'a str,
    pub(super) ctx: &'a mut Ctx,
    pub(super) facts: &'a ConnFacts,
    pub(super) addr: std::net::SocketAddr,
    pub(super) kind: Kind<'a>,
    pub(super) send: Option<std::time::Duration>,
    pub(super) head_request: bool,
    pub(super) bytes_in: u64,
}

/// The client's response head, made of the backend's final one.
struct Final {
    head: ResponseHead,
    response: http::Response<()>,
    compression: Option<(Decision, Option<Encoder>)>,
}

impl Relay<'_> {
    pub(super) async fn run(
        self,
        mut stream: UpstreamConn,
        mut up: BytesMut,
        end: usize,
        respond: &mut SendResponse<Bytes>,
    ) -> Outcome {
        let mut tee = Tee::take(self.ctx);
        let last = match self.final_head(&mut stream, &mut up, end, &mut tee).await {
            Ok(last) => last,
            Err(failed) => return self.refuse(respond, failed).await,
        };
        if let Some(hit) = tee.instead(self.ctx) {
            return self.answer_stored(stream, &last.head, &hit, respond).await;
        }
        let Final {
            head,
            response,
            compression,
        } = last;
        self.ctx.answered(head.status);
        self.ctx.note_compression(compression.as_ref().map(|c| c.0));
        let coded = Coded::new(compression.and_then(|c| c.1));
        let body = Body::new(head.framing);
        let empty = self.head_request || body.is_done();
        let send = match respond.send_response(response, empty) {
            Ok(send) => send,
            Err(e) => {
                let error = format!("sending the response head: {e}");
                return self.refuse(respond, Unanswered::answer(502, error)).await;
            }
        };
        if empty {
            tee.finish(self.ctx);
            return self.put_back(stream, &head, !body.is_done(), 0);
        }
        let mut pass = Pass {
            send,
            body,
            framing: head.framing,
            coded,
            sent: 0,
            extra: false,
            tee,
        };
        match self.body(&mut stream, &mut up, &mut pass).await {
            Ok(()) => {
                std::mem::replace(&mut pass.tee, Tee::none()).finish(self.ctx);
                let unfinished = pass.extra || !pass.body.is_done();
                self.put_back(stream, &head, unfinished, pass.sent)
            }
            Err(error) => self.fail(head.status, pass.sent, error),
        }
    }

    /// Sends a stored response in place of the backend's (a `304` that refreshed it, or a
    /// failure it stands in for); the backend's connection goes back to the pool when its
    /// response had no body.
    async fn answer_stored(
        &self,
        stream: UpstreamConn,
        head: &ResponseHead,
        hit: &Hit,
        respond: &mut SendResponse<Bytes>,
    ) -> Outcome {
        if head.framing == Framing::None {
            let _ = self.put_back(stream, head, false, 0);
        }
        let (facts, ctx) = (self.facts, &*self.ctx);
        let mut outcome =
            super::stored::send_hit(facts, ctx, hit, self.head_request, respond).await;
        outcome.bytes_in = self.bytes_in;
        outcome
    }

    /// Reads past interim heads (HTTP/2 clients are not sent them) to the final one, made
    /// into the client's head by the same edits as for an HTTP/1 client, and takes it off
    /// `up`; `Err`: the client's status and why.
    async fn final_head(
        &self,
        stream: &mut UpstreamConn,
        up: &mut BytesMut,
        mut end: usize,
        tee: &mut Tee,
    ) -> Result<Final, Unanswered> {
        let mut interim = 0;
        loop {
            let failed = match with_response(&up[..end], |resp| self.edited(resp)) {
                Ok(Some(Ok(last))) => {
                    tee.head(&up[..end]);
                    up.advance(end);
                    return Ok(last);
                }
                // HTTP/2 has no upgrade: a 101 is a backend's mistake.
                Ok(Some(Err(101))) => "101 to an HTTP/2 request",
                Ok(Some(Err(_))) if interim == MAX_INTERIM => "too many interim responses",
                Ok(Some(Err(_))) => {
                    // 1xx: nothing asked for 100-continue.
                    interim += 1;
                    up.advance(end);
                    let mut received = true;
                    let limit = self.ctx.first_byte_limit();
                    end = read_response_head(stream, up, limit, &mut received)
                        .await
                        .map_err(|(kind, error)| Unanswered::answer(io_status(kind), error))?;
                    continue;
                }
                Ok(None) => "bad status or Content-Length",
                Err(_) => "bad response header",
            };
            return Err(Unanswered::answer(502, failed));
        }
    }

    /// The client's head for the backend's `resp`; `Err(status)` for an interim one, `None`
    /// when it is not a response.
    fn edited(&self, resp: &httparse::Response<'_, '_>) -> Option<Result<Final, u16>> {
        let head = response_head(resp, self.head_request)?;
        if head.status < 200 {
            return Some(Err(head.status));
        }
        let fields = resp.headers.iter().map(|h| (h.name, h.value));
        let compression = self.ctx.compression_for(head.status, fields);
        let edits = ResponseEdits::of(self.ctx, self.facts.tls.is_some());
        let edits = edits.compressed(compression.as_ref().map(|c| c.0));
        // A compressed body's length is known at its end only.
        let framing = match edits.coding {
            Some(_) => Framing::UntilClose,
            None => head.framing,
        };
        let response = client_head(resp, head.status, framing, &edits, &self.ctx.request_id)?;
        Some(Ok(Final {
            head,
            response,
            compression,
        }))
    }

    /// Passes the body (what `up` holds, then what `stream` sends) as DATA frames, each read
    /// within the route's idle timeout and all within its total timeout; a body broken off
    /// resets the stream.
    async fn body(
        &self,
        stream: &mut UpstreamConn,
        up: &mut BytesMut,
        pass: &mut Pass,
    ) -> Result<(), String> {
        let (idle, deadline) = (self.ctx.timeouts().idle, self.ctx.deadline());
        let mut runs: Vec<Range<usize>> = Vec::new();
        loop {
            if !up.is_empty() {
                self.forward(up, &mut runs, pass).await?;
            }
            if pass.body.is_done() {
                break;
            }
            up.reserve(UPSTREAM_BUF);
            match within(limit(idle, deadline), stream.read_buf(up)).await {
                Ok(0) if pass.framing == Framing::UntilClose => break,
                Ok(0) => return Err(pass.reset("backend closed mid-body".into())),
                Ok(_) => {}
                Err(e) => return Err(pass.reset(format!("reading the body: {e}"))),
            }
        }
        let last = match pass.coded.end() {
            Ok(last) => last,
            Err(e) => return Err(pass.reset(format!("compressing: {e}"))),
        };
        pass.sent += last.len();
        send_data(&mut pass.send, last, true, self.send)
            .await
            .map_err(|e| format!("sending the response: {e}"))
    }

    /// Sends the payload among what `up` holds (compressed where it is) as DATA.
    async fn forward(
        &self,
        up: &mut BytesMut,
        runs: &mut Vec<Range<usize>>,
        pass: &mut Pass,
    ) -> Result<(), String> {
        runs.clear();
        let Ok((n, _)) = pass.body.take_with(up, |r| runs.push(r)) else {
            return Err(pass.reset("bad chunked framing".into()));
        };
        pass.extra |= up.len() > n;
        let data = payload(up, n, runs);
        pass.tee.data(&data);
        let data = match pass.coded.pass(data) {
            Ok(data) => data,
            Err(e) => return Err(pass.reset(format!("compressing: {e}"))),
        };
        pass.sent += data.len();
        if data.is_empty() {
            // The encoder holds it all yet.
            return Ok(());
        }
        send_data(&mut pass.send, data, false, self.send)
            .await
            .map_err(|e| format!("sending the response: {e}"))
    }

    /// The outcome of a body sent whole; the connection goes back to the pool unless the
    /// backend sent more than the body or ended it by closing (`unfinished`).
    fn put_back(
        &self,
        stream: UpstreamConn,
        head: &ResponseHead,
        unfinished: bool,
        sent: usize,
    ) -> Outcome {
        if head.keepalive && !unfinished {
            let (_, idle) = self.ctx.backend_timeouts();
            pool::put(self.addr, self.kind, stream, idle, self.ctx.start);
        }
        Outcome {
            status: Some(head.status),
            bytes_in: self.bytes_in,
            bytes_out: sent,
            error: None,
        }
    }

    fn fail(&self, status: u16, bytes_out: usize, error: String) -> Outcome {
        Outcome {
            status: Some(status),
            bytes_in: self.bytes_in,
            bytes_out,
            error: Some(format!("{}: {error}", self.addr)),
        }
    }

    /// Answers `failed`'s status when nothing of the response went to the client yet.
    async fn refuse(&self, respond: &mut SendResponse<Bytes>, failed: Unanswered) -> Outcome {
        let asking = super::answer::asking(self.ctx, self.parts, self.host);
        let how = (self.head_request, self.send);
        let mut outcome = super::answer::unanswered(respond, asking, how, failed).await;
        outcome.bytes_in = self.bytes_in;
        outcome.error = outcome.error.map(|e| format!("{}: {e}", self.addr));
        outcome
    }
}

/// A body on its way to the client.
struct Pass {
    send: SendStream<Bytes>,
    body: Body,
    framing: Framing,
    coded: Coded,
    sent: usize,
    extra: bool,
    /// The response's way into the edge cache.
    tee: Tee,
}

impl Pass {
    /// Resets the client's stream, so it never sees the body complete: `error`.
    fn reset(&mut self, error: String) -> String {
        self.send.send_reset(Reason::INTERNAL_ERROR);
        error
    }
}

/// The payload among the first `n` bytes of `up` (`runs` of it), taken off `up`: without a
/// copy when it is one run from the start (a length or close-delimited body).
fn payload(up: &mut BytesMut, n: usize, runs: &[Range<usize>]) -> Bytes {
    if let [run] = runs {
        if run.start == 0 {
            let data = up.split_to(run.end).freeze();
            up.advance(n - run.end);
            return data;
        }
    }
    let mut data = BytesMut::with_capacity(runs.iter().map(|r| r.len()).sum());
    for run in runs {
        data.extend_from_slice(&up[run.clone()]);
    }
    up.advance(n);
    data.freeze()
}
