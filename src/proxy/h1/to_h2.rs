//! An HTTP/1 request to a backend that speaks HTTP/2 (`http2 = true`: TLS with ALPN `h2`, or
//! h2c): the request goes as a stream on the thread's HTTP/2 connection (`route::h2_pool`), its
//! body's payload as DATA frames (chunk framing taken off); the response goes to the client as
//! `from_h2` writes it, compressed where the site compresses.

use bytes::Bytes;
use h2::Reason;
use http::Method;

use super::forward::Forward;
use super::from_h2::Back;
use super::own::{answer_unanswered, io_status};
use super::request::{BodyFraming, Request};
use super::upload::{Upload, UploadError};
use super::{send_timeout, Buffers, Outcome};
use crate::proxy::attempts::{h2_failure, stream_failure, NoResponse, Picked, Unanswered};
use crate::proxy::conn::{ClientConn, ConnFacts};
use crate::proxy::ctx::Ctx;
use crate::proxy::forwarding::Protocol;
use crate::proxy::http1::Framing;
use crate::proxy::http2::{backend_request, Outgoing};
use crate::proxy::timed::within;
use crate::proxy::Proxy;
use crate::route::h2_pool;
use crate::route::pool::Kind;
use crate::route::retry::Stake;
use crate::route::router::ProxyAction;
use crate::semantics::fields::Field;

impl Proxy {
    /// Exchanges the request with an HTTP/2 backend (others as the route's retry policy
    /// allows). `None`: the backend chose HTTP/1.1 by ALPN (its connection is in the HTTP/1
    /// pool) and the request goes that way.
    pub(super) async fn h1_to_h2(
        &self,
        conn: &mut ClientConn,
        to: Forward<'_, '_>,
        ctx: &mut Ctx,
        bufs: &mut Buffers,
        input: &mut bytes::BytesMut,
        upload: &mut Upload,
    ) -> Option<Outcome> {
        let (request, action, kind, facts) = (to.request, to.action, to.kind, to.facts);
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
            let unanswered = match picked.await {
                Picked::Fail(failed) => failed,
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
                        Err(NoResponse(_, unanswered)) => unanswered,
                    }
                }
            };
            let (asking, how) = (request.asking(ctx), (head_request, send));
            let answered = answer_unanswered(conn, out, &asking, unanswered, how, upload.payload);
            return Some(answered.await);
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
            .map_err(|e| NoResponse(None, Unanswered::answer(400, e)))?;
        let end = req.body == BodyFraming::None;
        let (response, mut stream) = sender.clone().send_request(upstream, end).map_err(|e| {
            h2_pool::forget(addr, kind);
            let error = format!("{addr}: {e}");
            NoResponse(Some(h2_failure(&e)), Unanswered::answer(502, error))
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
                return Err(NoResponse(failure, super::forward::body_failed(e)));
            }
        }
        let waited = within(ctx.first_byte_limit(), async {
            response.await.map_err(std::io::Error::other)
        });
        waited.await.map_err(|e| {
            let status = io_status(e.kind());
            let error = format!("{addr}: {e}");
            NoResponse(Some(stream_failure(&e)), Unanswered::answer(status, error))
        })
    }
}

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
