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
use super::upload::{Upload, UploadError};
use super::{send_timeout, write_out, Buffers, Outcome};
use crate::proxy::attempts::{h2_failure, stream_failure, Picked};
use crate::proxy::conn::{ClientConn, ConnFacts};
use crate::proxy::ctx::Ctx;
use crate::proxy::forwarding::Protocol;
use crate::proxy::http1::{push_body, push_date, push_field, status_line_for, Framing};
use crate::proxy::http2::{backend_request, Outgoing};
use crate::proxy::response_edits::{edited_fields, ResponseEdits};
use crate::proxy::timed::within;
use crate::proxy::Proxy;
use crate::route::h2_pool;
use crate::route::pool::Kind;
use crate::route::retry::{Failure, Stake};
use crate::route::router::ProxyAction;
use crate::semantics::fields::{content_length, field, Field};

impl Proxy {
    /// Exchanges the request with an HTTP/2 backend (others as the route's retry policy
    /// allows). `None`: the backend chose HTTP/1.1 by ALPN (its connection is in the HTTP/1
    /// pool) and the request goes that way.
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
        let (req, send) = (request.req, send_timeout(ctx));
        let head_request = req.method == Method::HEAD;
        let out = &mut bufs.out;
        let response = loop {
            let mut fields = request.parsed.headers.iter();
            let header = |name: &http::HeaderName| {
                let found = fields.find(|h| h.name.eq_ignore_ascii_case(name.as_str()));
                found.map(|h| h.value)
            };
            let picked = self.h2_pick(ctx, action, req.target.path(), header, kind);
            let (status, error) = match picked.await {
                Picked::Fail(status, error) => (status, error),
                Picked::Http1 => return None,
                Picked::Again => continue,
                Picked::Ready(addr, sender) => {
                    let to = (sender, addr, kind);
                    let stream =
                        self.h1_stream(conn, to, request, action, ctx, facts, input, upload);
                    let answer = stream.await;
                    let stake = Stake {
                        idempotent: req.method.is_idempotent(),
                        replayable: !upload.streamed,
                    };
                    match answer {
                        Ok(r) if self.retry_response(ctx, &r, stake).await => continue,
                        Ok(response) => break response,
                        Err(NoResponse(f, ..)) if self.retry_if(ctx, f, stake).await => continue,
                        Err(NoResponse(_, status, error)) => (status, error),
                    }
                }
            };
            let sent = match status {
                0 => 0,
                _ => {
                    let asking = request.asking(ctx);
                    error_response(conn, out, status, &asking, head_request, send).await
                }
            };
            return Some(failed(status, sent, error));
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

    /// Sends the request as a stream on `to`'s connection, its body from the client, and waits
    /// for the response head within the route's first-byte timeout.
    #[allow(clippy::too_many_arguments)]
    async fn h1_stream(
        &self,
        conn: &mut ClientConn,
        (sender, addr, kind): (
            h2::client::SendRequest<Bytes>,
            std::net::SocketAddr,
            Kind<'_>,
        ),
        request: &Request<'_>,
        action: &ProxyAction,
        ctx: &mut Ctx,
        facts: &ConnFacts,
        input: &mut bytes::BytesMut,
        upload: &mut Upload,
    ) -> Result<http::Response<h2::RecvStream>, NoResponse> {
        let req = request.req;
        let upstream = backend_request(h1_outgoing(request), action, ctx, facts)
            .map_err(|e| NoResponse(None, 400, e))?;
        let end = req.body == BodyFraming::None;
        let (response, mut stream) = sender.clone().send_request(upstream, end).map_err(|e| {
            h2_pool::forget(addr, kind);
            NoResponse(Some(h2_failure(&e)), 502, format!("{addr}: {e}"))
        })?;
        if !end {
            let framing = match req.body {
                BodyFraming::Chunked => Framing::Chunked,
                BodyFraming::Length(n) => Framing::Length(n),
                BodyFraming::None => Framing::Length(0),
            };
            let policy = ctx.snapshot.as_ref().map(|s| s.policy.body_read_timeout);
            let body_timeout = policy.unwrap_or(std::time::Duration::from_secs(60));
            let send = send_timeout(ctx);
            let write = ctx.idle_limit();
            let sending =
                upload.send_h2(framing, conn, input, &mut stream, body_timeout, write, send);
            if let Err(e) = sending.await {
                stream.send_reset(Reason::CANCEL);
                // The backend's failure while it had only what menshen holds: as any other.
                let failure = match &e {
                    UploadError::Backend(e) if !upload.streamed => Some(stream_failure(e)),
                    _ => None,
                };
                return Err(NoResponse(failure, e.status().unwrap_or(0), e.to_string()));
            }
        }
        let waited = within(ctx.first_byte_limit(), async {
            response.await.map_err(std::io::Error::other)
        });
        waited.await.map_err(|e| {
            let status = io_status(e.kind());
            NoResponse(Some(stream_failure(&e)), status, format!("{addr}: {e}"))
        })
    }
}

/// No response from the backend: how the attempt failed (`None`: not the backend's doing),
/// the client's status (0: none can be sent) and what to log.
struct NoResponse(Option<Failure>, u16, String);

/// The request as it goes to an HTTP/2 backend.
fn h1_outgoing<'a>(
    request: &'a Request<'_>,
) -> Outgoing<'a, impl Iterator<Item = (&'a str, &'a [u8])>> {
    let req = request.req;
    let fields = request.parsed.headers.iter().zip(request.fields);
    let fields = fields
        .filter(|(h, f)| req.forwards(**f, h.name) || **f == Field::HopByHop)
        .map(|(h, _)| (h.name, h.value));
    Outgoing {
        method: &req.method,
        target: req.target.as_str(),
        host: req.host.as_str(),
        fields,
        length: match req.body {
            BodyFraming::Length(n) => Some(n),
            BodyFraming::None | BodyFraming::Chunked => None,
        },
        protocol: match req.version {
            0 => Protocol::Http10,
            _ => Protocol::Http11,
        },
        received: req.received,
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
        let mut sent = 0;
        loop {
            let idle = self.ctx.idle_limit();
            let next = within(idle, async { Ok(down.data().await) }).await;
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
