//! HTTP/2 as both engines speak it to backends (and the HTTP/2 engine to clients): the request
//! for an HTTP/2 backend, whatever the client's protocol, and DATA sent under the peer's flow
//! control.

use std::io;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use h2::SendStream;
use http::header;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::conn::ConnFacts;
use super::ctx::Ctx;
use super::forwarding::{edited_out, forwarding_fields, Hop, Protocol, Received};
use super::timed::within;
use crate::route::router::ProxyAction;
use crate::semantics::fields::{field, list_items, Field};

/// What the backend's HTTP/2 request is made of, whatever the client's protocol.
pub(in crate::proxy) struct Outgoing<'a, I> {
    pub(in crate::proxy) method: &'a Method,
    /// The canonical path and query.
    pub(in crate::proxy) target: &'a str,
    /// The canonical Host.
    pub(in crate::proxy) host: &'a str,
    /// The client's fields that may be forwarded (hop-by-hop ones are dropped here too).
    pub(in crate::proxy) fields: I,
    pub(in crate::proxy) length: Option<u64>,
    /// The client's protocol and what it said of the request's way here.
    pub(in crate::proxy) protocol: Protocol,
    pub(in crate::proxy) received: Received<'a>,
}

/// The request for the backend: the canonical (or rewritten) path, the Host sent as the
/// authority, the client's fields less what menshen sets, `te: trailers` kept (gRPC needs
/// it), a length the client gave, menshen's forwarding fields.
pub(in crate::proxy) fn backend_request<'f>(
    out: Outgoing<'_, impl Iterator<Item = (&'f str, &'f [u8])>>,
    action: &ProxyAction,
    ctx: &Ctx,
    facts: &ConnFacts,
) -> Result<http::Request<()>, String> {
    let path = action.rewrite.apply(ctx.route_prefix(), out.target);
    let authority = match &action.host_header {
        Some(host) => host.to_str().map_err(|e| e.to_string())?,
        None => out.host,
    };
    let scheme = match action.upstream.tls() {
        Some(_) => "https",
        None => "http",
    };
    let uri = format!(
        "{scheme}://{authority}{}",
        path.as_deref().unwrap_or(out.target)
    );
    let mut upstream = http::Request::builder()
        .method(out.method.clone())
        .uri(uri)
        .body(())
        .map_err(|e| e.to_string())?;
    let headers = upstream.headers_mut();
    for (name, value) in out.fields {
        let trailers = || list_items(value).any(|t| t.eq_ignore_ascii_case(b"trailers"));
        match field(name) {
            Field::Other | Field::UserAgent if edited_out(ctx, name) => continue,
            Field::Other | Field::UserAgent => {}
            Field::HopByHop if name.eq_ignore_ascii_case("te") && trailers() => {
                headers.append(header::TE, HeaderValue::from_static("trailers"));
                continue;
            }
            _ => continue,
        }
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
        let value = HeaderValue::from_bytes(value).map_err(|e| e.to_string())?;
        headers.append(name, value);
    }
    if let Some(n) = out.length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    let hop = Hop {
        host: out.host,
        protocol: out.protocol,
        received: out.received,
    };
    forwarding_fields(&hop, ctx, facts, |name, parts| {
        if let Ok(value) = HeaderValue::from_bytes(&parts.concat()) {
            if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                headers.append(name, value);
            }
        }
    });
    Ok(upstream)
}

/// Sends `data` on `send` as the client's flow control allows, each wait for window within
/// `limit`; `end` ends the stream with the last frame.
pub(in crate::proxy) async fn send_data(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    limit: Option<Duration>,
) -> io::Result<()> {
    let mut ended = false;
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let capacity = std::future::poll_fn(|cx| match send.poll_capacity(cx) {
            Poll::Ready(Some(Ok(n))) => Poll::Ready(Ok(n)),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Err(io::Error::other(e))),
            Poll::Ready(None) => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            Poll::Pending => Poll::Pending,
        });
        let n = within(limit, capacity).await?;
        if n == 0 {
            continue;
        }
        let chunk = data.split_to(n.min(data.len()));
        ended = end && data.is_empty();
        send.send_data(chunk, ended).map_err(io::Error::other)?;
    }
    if end && !ended {
        send.send_data(Bytes::new(), true)
            .map_err(io::Error::other)?;
    }
    Ok(())
}

/// Trailers less what may not be in them (hop-by-hop fields).
pub(in crate::proxy) fn trailers_filtered(mut trailers: HeaderMap) -> HeaderMap {
    let drop: Vec<HeaderName> = trailers
        .keys()
        .filter(|n| !matches!(field(n.as_str()), Field::Other | Field::UserAgent))
        .cloned()
        .collect();
    for name in drop {
        trailers.remove(name);
    }
    trailers
}
