//! An HTTP/1 backend's response on its way to an HTTP/2 client: the head (interim ones
//! skipped) turned into HTTP/2 fields by the same edits as for an HTTP/1 client, the body's
//! payload (chunk framing taken off) sent as DATA frames as the client's window allows, the
//! backend connection back to the pool when the body ended well. A body the backend breaks off
//! resets the stream: the client never sees it complete.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};
use h2::server::SendResponse;
use h2::Reason;
use http::{HeaderName, HeaderValue, StatusCode};
use tokio::io::AsyncReadExt;

use super::answer::{answer, date, own_response, Outcome};
use crate::proxy::conn::ConnFacts;
use crate::proxy::ctx::Ctx;
use crate::proxy::encoder::Encoder;
use crate::proxy::http1::{
    read_response_head, response_head, with_response, Body, Framing, MAX_INTERIM, UPSTREAM_BUF,
};
use crate::proxy::http2::send_data;
use crate::proxy::own::{self, io_status};
use crate::proxy::response_edits::{response_fields, ResponseEdits};
use crate::proxy::timed::within;
use crate::route::pool::{self, Kind};
use crate::route::upstream_conn::UpstreamConn;
use crate::semantics::fields::{field, Field};

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

impl Relay<'_> {
    pub(super) async fn run(
        self,
        mut stream: UpstreamConn,
        mut up: BytesMut,
        mut end: usize,
        respond: &mut SendResponse<Bytes>,
    ) -> Outcome {
        let (read_timeout, idle_timeout) = self.ctx.backend_timeouts();
        let id = self.ctx.request_id.clone();
        let edits = ResponseEdits::of(self.ctx, self.facts.tls.is_some());
        let fail = |status: u16, bytes_out: usize, error: String| Outcome {
            status,
            bytes_in: self.bytes_in,
            bytes_out,
            error: Some(format!("{}: {error}", self.addr)),
        };
        let mut interim = 0;
        let ctx = &*self.ctx;
        let (head, (response, compression)) = loop {
            let parsed = with_response(&up[..end], |resp| {
                let head = response_head(resp, self.head_request)?;
                if head.status < 200 {
                    return Some((head, None));
                }
                let mut response = http::Response::new(());
                *response.status_mut() = StatusCode::from_u16(head.status).ok()?;
                let headers = response.headers_mut();
                let fields = resp.headers.iter().map(|h| (h.name, h.value));
                let compression = ctx.compression_for(head.status, fields);
                let edits = edits.compressed(compression.as_ref().map(|c| c.0));
                // A compressed body's length is known at its end only.
                let framing = match edits.coding {
                    Some(_) => Framing::UntilClose,
                    None => head.framing,
                };
                let has_date = response_fields(resp, framing, &edits, |name, value| {
                    // The backend's framing is its own: HTTP/2 frames the body.
                    if field(name) == Field::TransferEncoding {
                        return;
                    }
                    let name = HeaderName::from_bytes(name.as_bytes());
                    if let (Ok(name), Ok(value)) = (name, HeaderValue::from_bytes(value)) {
                        headers.append(name, value);
                    }
                });
                headers.insert("x-request-id", id.clone());
                if !has_date {
                    date(headers);
                }
                Some((head, Some((response, compression))))
            });
            let failed = match parsed {
                Ok(Some((head, Some(response)))) => break (head, response),
                // HTTP/2 has no upgrade: a 101 is a backend's mistake.
                Ok(Some((head, None))) if head.status == 101 => "101 to an HTTP/2 request",
                Ok(Some(_)) if interim == MAX_INTERIM => "too many interim responses",
                Ok(Some(_)) => {
                    // 1xx: HTTP/2 clients are not sent them (nothing asked for 100-continue).
                    interim += 1;
                    up.advance(end);
                    let mut received = true;
                    match read_response_head(&mut stream, &mut up, read_timeout, &mut received)
                        .await
                    {
                        Ok(next) => {
                            end = next;
                            continue;
                        }
                        Err((kind, error)) => {
                            let status = io_status(kind);
                            return self.refuse(respond, status, error, fail).await;
                        }
                    }
                }
                Ok(None) => "bad status or Content-Length",
                Err(_) => "bad response header",
            };
            return self.refuse(respond, 502, failed.into(), fail).await;
        };
        self.ctx.answered(head.status);
        self.ctx.note_compression(compression.as_ref().map(|c| c.0));
        let mut encoder = compression.and_then(|c| c.1);
        up.advance(end);
        let mut body = Body::new(head.framing);
        let empty = self.head_request || body.is_done();
        let mut send = match respond.send_response(response, empty) {
            Ok(send) => send,
            Err(e) => {
                let error = format!("sending the response head: {e}");
                return self.refuse(respond, 502, error, fail).await;
            }
        };
        let mut sent = 0;
        let mut extra = false;
        let mut runs: Vec<Range<usize>> = Vec::new();
        let mut more = !empty;
        while more {
            if !up.is_empty() {
                runs.clear();
                let Ok((n, _)) = body.take_with(&up, |r| runs.push(r)) else {
                    send.send_reset(Reason::INTERNAL_ERROR);
                    return fail(head.status, sent, "bad chunked framing".into());
                };
                extra |= up.len() > n;
                let data = payload(&mut up, n, &runs);
                let data = match &mut encoder {
                    None => data,
                    Some(e) => match compressed(e, &data) {
                        Ok(data) => data,
                        Err(e) => {
                            send.send_reset(Reason::INTERNAL_ERROR);
                            return fail(head.status, sent, format!("compressing: {e}"));
                        }
                    },
                };
                sent += data.len();
                if data.is_empty() {
                    // The encoder holds it all yet.
                } else if let Err(e) = send_data(&mut send, data, false, self.send).await {
                    return fail(head.status, sent, format!("sending the response: {e}"));
                }
            }
            if body.is_done() {
                break;
            }
            up.reserve(UPSTREAM_BUF);
            match within(read_timeout, stream.read_buf(&mut up)).await {
                Ok(0) if head.framing == Framing::UntilClose => more = false,
                Ok(0) => {
                    send.send_reset(Reason::INTERNAL_ERROR);
                    return fail(head.status, sent, "backend closed mid-body".into());
                }
                Ok(_) => {}
                Err(e) => {
                    send.send_reset(Reason::INTERNAL_ERROR);
                    return fail(head.status, sent, format!("reading the body: {e}"));
                }
            }
        }
        if !empty {
            let mut last = Vec::new();
            if let Some(Err(e)) = encoder.map(|e| e.finish(&mut last)) {
                send.send_reset(Reason::INTERNAL_ERROR);
                return fail(head.status, sent, format!("compressing: {e}"));
            }
            sent += last.len();
            if let Err(e) = send_data(&mut send, Bytes::from(last), true, self.send).await {
                return fail(head.status, sent, format!("sending the response: {e}"));
            }
        }
        if head.keepalive && !extra && body.is_done() {
            pool::put(self.addr, self.kind, stream, idle_timeout, self.ctx.start);
        }
        Outcome {
            status: head.status,
            bytes_in: self.bytes_in,
            bytes_out: sent,
            error: None,
        }
    }

    /// Answers `status` when nothing of the response went to the client yet.
    async fn refuse(
        &self,
        respond: &mut SendResponse<Bytes>,
        status: u16,
        error: String,
        fail: impl FnOnce(u16, usize, String) -> Outcome,
    ) -> Outcome {
        let asking = super::answer::asking(self.ctx, self.parts, self.host);
        let reply = own::error(status, &asking, |o| own_response(o, &self.ctx.request_id));
        let (sent, _) = answer(respond, reply, self.head_request, self.send).await;
        fail(status, sent, error)
    }
}

/// What the encoder has ready after `data`.
fn compressed(encoder: &mut Encoder, data: &[u8]) -> std::io::Result<Bytes> {
    let mut out = Vec::new();
    encoder.push(data, &mut out)?;
    Ok(Bytes::from(out))
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
