//! An HTTP/1 request to a backend that speaks HTTP/2 (`http2 = true`: TLS with ALPN `h2`, or
//! h2c): the request goes as a stream on the thread's HTTP/2 connection (`route::h2_pool`), its
//! body's payload as DATA frames (chunk framing taken off); the response comes back as
//! HTTP/1.1 with the backend's length, or chunked with its trailers as the trailer section
//! (close-delimited for an HTTP/1.0 client). A stream the backend breaks off leaves the
//! client's framing unfinished and closes the connection.

use bytes::Bytes;
use h2::Reason;
use http::{header, Method};

use super::own::{error_response, io_status};
use super::request::{BodyFraming, Request};
use super::response::Persist;
use super::upload::Upload;
use super::{send_timeout, write_out, Buffers, Outcome};
use crate::proxy::conn::{ClientConn, ConnFacts};
use crate::proxy::ctx::Ctx;
use crate::proxy::forwarding::Protocol;
use crate::proxy::http1::{push_body, push_date, push_field, status_line_for, Framing};
use crate::proxy::http2::{backend_request, Outgoing};
use crate::proxy::phases::{Failure, Unconnected};
use crate::proxy::response_edits::{edited_fields, ResponseEdits};
use crate::proxy::timed::within;
use crate::proxy::Proxy;
use crate::route::h2_pool;
use crate::route::pool::Kind;
use crate::route::router::ProxyAction;
use crate::semantics::fields::{content_length, field, Field};

impl Proxy {
    /// Exchanges the request with an HTTP/2 backend. `None`: the backend chose HTTP/1.1 by
    /// ALPN (its connection is in the HTTP/1 pool) and the request goes that way.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn h1_to_h2(
        &self,
        conn: &mut ClientConn,
        facts: &ConnFacts,
        request: &Request<'_>,
        action: &ProxyAction,
        kind: Kind<'_>,
        ctx: &mut Ctx,
        bufs: &mut Buffers,
        input: &mut bytes::BytesMut,
        upload: &mut Upload,
    ) -> Option<Outcome> {
        let req = request.req;
        let head_request = req.method == Method::HEAD;
        let id = ctx.request_id.clone();
        let send = send_timeout(ctx);
        let out = &mut bufs.out;
        let (addr, sender) = loop {
            let header = |name: &http::HeaderName| {
                let fields = request.parsed.headers.iter();
                fields
                    .filter(|h| h.name.eq_ignore_ascii_case(name.as_str()))
                    .map(|h| h.value)
                    .next()
            };
            let picked = self.pick_backend(action, ctx, req.target.path(), header);
            let failure = match picked {
                Err(e) => Failure::new(502, e.to_string()),
                Ok(addr) => match self.h2_sender(ctx, action, addr, kind).await {
                    Ok(Some(sender)) => break (addr, sender),
                    Ok(None) => return None,
                    Err(Unconnected::TryAnother) => continue,
                    Err(Unconnected::Fail(failure)) => failure,
                },
            };
            let Failure { status, error } = failure;
            let sent = error_response(conn, out, status, id.as_bytes(), head_request, send).await;
            return Some(failed(status, sent, error));
        };
        let fields = request.parsed.headers.iter().zip(request.fields);
        let fields = fields
            .filter(|(h, f)| req.forwards(**f, h.name) || **f == Field::HopByHop)
            .map(|(h, _)| (h.name, h.value));
        let length = match req.body {
            BodyFraming::Length(n) => Some(n),
            BodyFraming::None | BodyFraming::Chunked => None,
        };
        let outgoing = Outgoing {
            method: &req.method,
            target: req.target.as_str(),
            host: req.host.as_str(),
            fields,
            length,
            protocol: match req.version {
                0 => Protocol::Http10,
                _ => Protocol::Http11,
            },
            received: req.received,
        };
        let upstream = match backend_request(outgoing, action, ctx, facts) {
            Ok(upstream) => upstream,
            Err(e) => {
                let sent = error_response(conn, out, 400, id.as_bytes(), head_request, send);
                return Some(failed(400, sent.await, e));
            }
        };
        let end = req.body == BodyFraming::None;
        let (response, mut stream) = match sender.clone().send_request(upstream, end) {
            Ok(sent) => sent,
            Err(e) => {
                h2_pool::forget(addr, kind);
                let sent = error_response(conn, out, 502, id.as_bytes(), head_request, send);
                return Some(failed(502, sent.await, format!("{addr}: {e}")));
            }
        };
        if !end {
            let framing = match req.body {
                BodyFraming::Chunked => Framing::Chunked,
                _ => Framing::Length(length.unwrap_or(0)),
            };
            let policy = ctx.snapshot.as_ref().map(|s| s.policy.body_read_timeout);
            let body_timeout = policy.unwrap_or(std::time::Duration::from_secs(60));
            let sending = upload.send_h2(framing, conn, input, &mut stream, body_timeout, send);
            if let Err(e) = sending.await {
                stream.send_reset(Reason::CANCEL);
                let (status, sent) = match e.status() {
                    None => (0, 0),
                    Some(status) => {
                        let answer =
                            error_response(conn, out, status, id.as_bytes(), head_request, send);
                        (status, answer.await)
                    }
                };
                return Some(failed(status, sent, e.to_string()));
            }
        }
        let (read_timeout, _) = ctx.backend_timeouts();
        let waited = within(read_timeout, async {
            response.await.map_err(std::io::Error::other)
        });
        let response = match waited.await {
            Ok(response) => response,
            Err(e) => {
                let status = io_status(e.kind());
                let sent = error_response(conn, out, status, id.as_bytes(), head_request, send);
                return Some(failed(status, sent.await, format!("{addr}: {e}")));
            }
        };
        ctx.answered(response.status().as_u16());
        let relay = Back {
            request,
            ctx,
            facts,
            head_request,
            bytes_in: upload.payload,
        };
        Some(relay.run(conn, out, response).await)
    }
}

fn failed(status: u16, bytes_out: usize, error: String) -> Outcome {
    Outcome {
        status,
        bytes_in: 0,
        bytes_out,
        keep: false,
        error: Some(error),
    }
}

/// An HTTP/2 backend's response on its way to an HTTP/1 client.
struct Back<'a, 'r> {
    request: &'a Request<'r>,
    ctx: &'a Ctx,
    facts: &'a ConnFacts,
    head_request: bool,
    bytes_in: u64,
}

impl Back<'_, '_> {
    async fn run(
        self,
        conn: &mut ClientConn,
        out: &mut Vec<u8>,
        response: http::Response<h2::RecvStream>,
    ) -> Outcome {
        let req = self.request.req;
        let send = send_timeout(self.ctx);
        let (parts, mut down) = response.into_parts();
        let status = parts.status.as_u16();
        let http10 = req.version == 0;
        let length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| content_length(v.as_bytes()));
        let bodiless = self.head_request || status == 204 || status == 304;
        let framing = match (bodiless, length, http10) {
            (true, _, _) => Framing::None,
            (false, Some(n), _) => Framing::Length(n),
            (false, None, false) => Framing::Chunked,
            (false, None, true) => Framing::UntilClose,
        };
        let close = req.close || self.request.draining || framing == Framing::UntilClose;
        let persist = match close {
            true => Persist::Close,
            false => Persist::KeepAlive { http10 },
        };
        out.clear();
        status_line_for(out, status, None);
        let edits = ResponseEdits::of(self.ctx, self.facts.tls.is_some());
        let fields: Vec<(&str, &[u8])> = parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        // A HEAD response keeps the length a GET would have.
        let kept = match framing {
            Framing::None => Framing::Length(0),
            other => other,
        };
        let has_date = edited_fields(fields.iter().copied(), kept, &edits, |name, value| {
            push_field(out, name.as_bytes(), value)
        });
        push_field(out, b"x-request-id", self.ctx.request_id.as_bytes());
        if !has_date {
            push_date(out);
        }
        if framing == Framing::Chunked {
            push_field(out, b"transfer-encoding", b"chunked");
        }
        persist.push(out);
        out.extend_from_slice(b"\r\n");
        let outcome = |bytes_out: usize, error: Option<String>| Outcome {
            status,
            bytes_in: self.bytes_in,
            bytes_out,
            keep: error.is_none() && persist != Persist::Close,
            error,
        };
        if let Err(e) = write_out(conn, out, send).await {
            return outcome(0, Some(format!("writing the response: {e}")));
        }
        if framing == Framing::None {
            return outcome(0, None);
        }
        let chunked = framing == Framing::Chunked;
        let (read_timeout, _) = self.ctx.backend_timeouts();
        let mut sent = 0;
        loop {
            let next = within(read_timeout, async { Ok(down.data().await) }).await;
            let chunk: Bytes = match next {
                Ok(Some(Ok(chunk))) => chunk,
                Ok(None) => break,
                Ok(Some(Err(e))) => return outcome(sent, Some(format!("reading the body: {e}"))),
                Err(e) => return outcome(sent, Some(format!("reading the body: {e}"))),
            };
            let _ = down.flow_control().release_capacity(chunk.len());
            sent += chunk.len();
            out.clear();
            push_body(out, &chunk, chunked);
            if let Err(e) = write_out(conn, out, send).await {
                return outcome(sent, Some(format!("writing the response: {e}")));
            }
        }
        if let Framing::Length(n) = framing {
            if sent as u64 != n {
                return outcome(sent, Some("the backend's body and length differ".into()));
            }
        }
        let trailers = match down.trailers().await {
            Ok(trailers) => trailers,
            Err(e) => return outcome(sent, Some(format!("reading the trailers: {e}"))),
        };
        if chunked {
            out.clear();
            out.extend_from_slice(b"0\r\n");
            // Trailer fields that describe the message (framing, routing) are not the
            // backend's to send (RFC 9110 6.5.1).
            let fields = trailers.iter().flatten();
            for (name, value) in fields.filter(|(n, _)| field(n.as_str()) == Field::Other) {
                push_field(out, name.as_str().as_bytes(), value.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            if let Err(e) = write_out(conn, out, send).await {
                return outcome(sent, Some(format!("writing the response: {e}")));
            }
        }
        outcome(sent, None)
    }
}
