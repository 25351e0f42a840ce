//! An HTTP/2 request's way to an HTTP/1 backend: the request head written as HTTP/1.1 (the
//! client's fields less what menshen sets, cookies joined, the body framed by its length or
//! chunked), the body streamed as DATA frames arrive, the response head read; then `relay`.

use std::io;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::RecvStream;
use http::{header, HeaderName, HeaderValue, Method};
use tokio::io::AsyncWriteExt;

use super::answer::{answer, own_response, Outcome};
use crate::proxy::conn::ConnFacts;
use crate::proxy::ctx::Ctx;
use crate::proxy::forwarding::{edited_out, forwarding_fields, Hop, Protocol, Received};
use crate::proxy::http1::{
    push_field, push_field_parts, read_response_head, Framing, UPSTREAM_BUF,
};
use crate::proxy::own::{self, io_status};
use crate::proxy::phases::{pool_kind, Failure, NoResponse, Try, Unconnected};
use crate::proxy::timed::within;
use crate::proxy::Proxy;
use crate::route::pool::{self, Kind};
use crate::route::router::ProxyAction;
use crate::route::upstream_conn::UpstreamConn;
use crate::semantics::fields::{field, Field};
use crate::semantics::target::{Host, Target};

/// What the exchange needs of a mapped request.
pub(super) struct Request<'a> {
    pub(super) parts: &'a http::request::Parts,
    pub(super) target: &'a Target<'a>,
    pub(super) host: &'a Host<'a>,
    pub(super) length: Option<u64>,
}

impl Proxy {
    /// Sends the request to a backend and its response to the client.
    pub(super) async fn h2_exchange(
        &self,
        facts: &ConnFacts,
        request: &Request<'_>,
        mut body: RecvStream,
        action: &ProxyAction,
        ctx: &mut Ctx,
        respond: &mut SendResponse<Bytes>,
    ) -> Outcome {
        let headers = &request.parts.headers;
        let head = request.parts.method == Method::HEAD;
        ctx.ask_compression(head, false, |name| headers.get(name).map(|v| v.as_bytes()));
        let kind = pool_kind(action, request.host.as_str());
        if action.upstream.offers_http2() {
            match self
                .to_h2(facts, request, body, action, kind, ctx, respond)
                .await
            {
                Ok(outcome) => return outcome,
                // The backend chose HTTP/1.1.
                Err(returned) => body = returned,
            }
        }
        let head_request = request.parts.method == Method::HEAD;
        let send = ctx.snapshot.as_ref().map(|s| s.policy.send_timeout);
        let framing = match (body.is_end_stream(), request.length) {
            (true, _) => None,
            (false, Some(n)) => Some(Framing::Length(n)),
            (false, None) => Some(Framing::Chunked),
        };
        let mut out = Vec::with_capacity(1024);
        upstream_head(&mut out, request, framing, action, ctx, facts);
        let mut up = BytesMut::with_capacity(UPSTREAM_BUF);
        let sent = self
            .h2_send_request(
                request, &out, &mut body, framing, action, kind, ctx, &mut up,
            )
            .await;
        let (stream, addr, end, bytes_in) = match sent {
            Ok(ok) => ok,
            Err(failed) => return answer_failure(failed, ctx, respond, head_request, send).await,
        };
        let relay = super::relay::Relay {
            ctx,
            facts,
            addr,
            kind,
            send,
            head_request,
            bytes_in,
        };
        relay.run(stream, up, end, respond).await
    }

    /// Writes the request to a backend (another after a failed connect; a new connection after
    /// a stale pooled one, for a request without a body) and reads its response head into
    /// `up`: the connection, the backend, the head's length and the body bytes sent.
    #[allow(clippy::too_many_arguments)]
    async fn h2_send_request(
        &self,
        request: &Request<'_>,
        head: &[u8],
        body: &mut RecvStream,
        framing: Option<Framing>,
        action: &ProxyAction,
        kind: Kind<'_>,
        ctx: &mut Ctx,
        up: &mut BytesMut,
    ) -> Result<(UpstreamConn, std::net::SocketAddr, usize, u64), NoResponse> {
        let options = action.upstream.options();
        let upload = Upload::of(ctx, framing, options.write_timeout);
        let parts = request.parts;
        'backends: loop {
            let header = |name: &HeaderName| parts.headers.get(name).map(HeaderValue::as_bytes);
            let addr = self
                .pick_backend(action, ctx, request.target.path(), header)
                .map_err(|e| NoResponse::answer(502, e.to_string()))?;
            let mut pooled = pool::take(addr, kind, ctx.start);
            loop {
                let reused = pooled.is_some();
                let mut stream = match pooled.take() {
                    Some(stream) => stream,
                    None => match self.connect_backend(ctx, action, addr, kind.name).await {
                        Ok(stream) => stream,
                        Err(Unconnected::TryAnother) => continue 'backends,
                        Err(Unconnected::Fail(failure)) => return Err(NoResponse::Answer(failure)),
                    },
                };
                let any = framing.is_some();
                let sent = upload
                    .exchange(&mut stream, (head, body), any, options.read_timeout, up)
                    .await;
                match sent {
                    Ok((end, bytes_in)) => return Ok((stream, addr, end, bytes_in)),
                    // A request without a body goes once more on a new connection.
                    Err(e) if e.stale(reused) && !any && parts.method.is_idempotent() => continue,
                    Err(Try::Broken { kind, error, .. }) => {
                        let error = format!("{addr}: {error}");
                        return Err(NoResponse::answer(io_status(kind), error));
                    }
                    Err(Try::Failed(failed)) => return Err(failed),
                }
            }
        }
    }
}

/// Writes the HTTP/1.1 request head for the backend into `out`.
fn upstream_head(
    out: &mut Vec<u8>,
    request: &Request<'_>,
    framing: Option<Framing>,
    action: &ProxyAction,
    ctx: &Ctx,
    facts: &ConnFacts,
) {
    let target = request.target.as_str();
    let path = action.rewrite.apply(ctx.route_prefix(), target);
    let host = match &action.host_header {
        Some(host) => host.as_bytes(),
        None => request.host.as_str().as_bytes(),
    };
    let sent = path.as_deref().unwrap_or(target);
    let forwarded = |name: &str| !edited_out(ctx, name);
    mapped_head(out, request.parts, sent, host, framing, forwarded);
    let hop = Hop {
        host: request.host.as_str(),
        protocol: Protocol::Http2,
        received: Received::of(&request.parts.headers),
    };
    forwarding_fields(&hop, ctx, facts, |name, parts| {
        push_field_parts(out, name.as_bytes(), parts)
    });
    out.extend_from_slice(b"\r\n");
}

/// The request line and the client's fields of an HTTP/2 request as HTTP/1.1 (without the
/// empty line that ends the head): `path` and `host` as sent, the fields less what menshen
/// sets, cookies joined, the body's framing.
pub(super) fn mapped_head(
    out: &mut Vec<u8>,
    parts: &http::request::Parts,
    path: &str,
    host: &[u8],
    framing: Option<Framing>,
    forwarded: impl Fn(&str) -> bool,
) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // HTTP/2 sends each cookie pair as a field of its own; HTTP/1 wants one (RFC 9113 8.2.3).
    let mut cookies = 0;
    for (name, value) in &parts.headers {
        let kept = matches!(field(name.as_str()), Field::Other | Field::UserAgent);
        if !kept || !forwarded(name.as_str()) {
            continue;
        }
        if name == header::COOKIE {
            out.extend_from_slice(match cookies {
                0 => b"cookie: ".as_slice(),
                _ => b"; ",
            });
            out.extend_from_slice(value.as_bytes());
            cookies += 1;
            continue;
        }
        push_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if cookies > 0 {
        out.extend_from_slice(b"\r\n");
    }
    push_field(out, b"host", host);
    match framing {
        Some(Framing::Length(n)) => push_field(
            out,
            b"content-length",
            itoa::Buffer::new().format(n).as_bytes(),
        ),
        Some(_) => push_field(out, b"transfer-encoding", b"chunked"),
        // A POST without a body still says so: some backends want a length (411).
        None if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) => {
            push_field(out, b"content-length", b"0")
        }
        None => {}
    }
}

/// Answers the client with the failure's status, if it is still there.
async fn answer_failure(
    failed: NoResponse,
    ctx: &Ctx,
    respond: &mut SendResponse<Bytes>,
    head_request: bool,
    send: Option<std::time::Duration>,
) -> Outcome {
    let id = &ctx.request_id;
    let (status, bytes_out, error) = match failed {
        NoResponse::ClientGone(error) => (0, 0, error),
        NoResponse::Answer(Failure { status, error }) => {
            let reply = own::error(status, |o| own_response(o, id));
            let sent = answer(respond, reply, head_request, send).await.0;
            (status, sent, error)
        }
    };
    Outcome {
        status,
        bytes_in: 0,
        bytes_out,
        error: Some(error),
    }
}

enum UploadError {
    Client(io::Error),
    Backend(io::Error),
    TooLarge,
}

/// How a request body goes to the backend.
struct Upload {
    chunked: bool,
    max: u64,
    read: Option<std::time::Duration>,
    write: Option<std::time::Duration>,
}

impl Upload {
    /// The upload of a request `framing` says has a body (or not), under the site's limit.
    fn of(ctx: &Ctx, framing: Option<Framing>, write: Option<std::time::Duration>) -> Self {
        let snapshot = ctx.snapshot.as_ref();
        Upload {
            chunked: framing == Some(Framing::Chunked),
            max: ctx
                .site
                .and_then(|i| snapshot?.site_policy(i))
                .map_or(u64::MAX, |s| s.max_body_bytes),
            read: snapshot.map(|s| s.policy.body_read_timeout),
            write,
        }
    }

    /// Writes the request `head` and the `body` (when `any`) on `stream`, then reads the
    /// response head into `up`: its length and the body bytes sent.
    async fn exchange(
        &self,
        stream: &mut UpstreamConn,
        (head, body): (&[u8], &mut RecvStream),
        any: bool,
        read_timeout: Option<std::time::Duration>,
        up: &mut BytesMut,
    ) -> Result<(usize, u64), Try<NoResponse>> {
        up.clear();
        let broken = |e: io::Error, what: &str| Try::Broken {
            kind: e.kind(),
            error: format!("{what}: {e}"),
            received: false,
        };
        within(self.write, stream.write_all(head))
            .await
            .map_err(|e| broken(e, "writing the request"))?;
        let bytes_in = match self.run(body, stream, any).await {
            Ok(n) => n,
            Err(UploadError::Client(e)) => {
                let error = format!("reading the request body: {e}");
                return Err(Try::Failed(NoResponse::ClientGone(error)));
            }
            Err(UploadError::TooLarge) => {
                let failure = NoResponse::answer(413, "request body too large");
                return Err(Try::Failed(failure));
            }
            Err(UploadError::Backend(e)) => return Err(broken(e, "writing the request body")),
        };
        let mut received = false;
        match read_response_head(stream, up, read_timeout, &mut received).await {
            Ok(end) => Ok((end, bytes_in)),
            Err((kind, error)) => Err(Try::Broken {
                kind,
                error,
                received,
            }),
        }
    }

    /// Streams the body (when `any`) to `stream` as DATA frames arrive, giving their window
    /// back as each is written; then flushes. The payload bytes sent.
    async fn run(
        &self,
        body: &mut RecvStream,
        stream: &mut UpstreamConn,
        any: bool,
    ) -> Result<u64, UploadError> {
        let mut total = 0u64;
        let mut more = any;
        while more {
            let next = within(self.read, async { Ok(body.data().await) }).await;
            let chunk = match next {
                Err(e) => return Err(UploadError::Client(e)),
                Ok(None) => {
                    more = false;
                    continue;
                }
                Ok(Some(Err(e))) => return Err(UploadError::Client(io::Error::other(e))),
                Ok(Some(Ok(chunk))) => chunk,
            };
            let _ = body.flow_control().release_capacity(chunk.len());
            total += chunk.len() as u64;
            if total > self.max {
                return Err(UploadError::TooLarge);
            }
            if chunk.is_empty() {
                continue;
            }
            let write = async {
                if self.chunked {
                    let mut size = itoa_hex(chunk.len());
                    size.extend_from_slice(b"\r\n");
                    stream.write_all(&size).await?;
                    stream.write_all(&chunk).await?;
                    stream.write_all(b"\r\n").await
                } else {
                    stream.write_all(&chunk).await
                }
            };
            within(self.write, write)
                .await
                .map_err(UploadError::Backend)?;
        }
        let end = async {
            if any && self.chunked {
                stream.write_all(b"0\r\n\r\n").await?;
            }
            stream.flush().await
        };
        within(self.write, end)
            .await
            .map_err(UploadError::Backend)?;
        Ok(total)
    }
}

fn itoa_hex(n: usize) -> Vec<u8> {
    format!("{n:x}").into_bytes()
}
