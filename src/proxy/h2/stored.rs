//! What an HTTP/2 client gets of an HTTP/1 response head, a backend's or a stored one (one
//! head writer, the same `response_fields` as for an HTTP/1 client), and a response of the edge
//! cache's sent whole: its head, then its body from memory as DATA under flow control.

use bytes::Bytes;
use h2::server::SendResponse;
use http::StatusCode;

use super::answer::{append_field, finish_head, Outcome};
use crate::proxy::conn::ConnFacts;
use crate::proxy::ctx::Ctx;
use crate::proxy::hit::Hit;
use crate::proxy::http1::{response_head, with_response, Framing};
use crate::proxy::http2::send_data;
use crate::proxy::response_edits::{response_fields, ResponseEdits};
use crate::semantics::fields::{field, Field};

/// The HTTP/2 head a client gets of the HTTP/1 response head `resp` (a backend's, or a stored
/// one), edited by the same `response_fields` as for an HTTP/1 client.
pub(super) fn client_head(
    resp: &httparse::Response<'_, '_>,
    status: u16,
    framing: Framing,
    edits: &ResponseEdits<'_>,
    id: &http::HeaderValue,
) -> Option<http::Response<()>> {
    let mut response = http::Response::new(());
    *response.status_mut() = StatusCode::from_u16(status).ok()?;
    let headers = response.headers_mut();
    let has_date = response_fields(resp, framing, edits, |name, value| {
        // The backend's framing is its own: HTTP/2 frames the body.
        if field(name) == Field::TransferEncoding {
            return;
        }
        append_field(headers, name, value);
    });
    finish_head(headers, id, has_date);
    Some(response)
}

/// Sends a stored response on the stream.
pub(super) async fn send_hit(
    facts: &ConnFacts,
    ctx: &Ctx,
    hit: &Hit,
    head_request: bool,
    respond: &mut SendResponse<Bytes>,
) -> Outcome {
    let edits = ResponseEdits::of(ctx, facts.tls.is_some());
    let stored = hit.head();
    let made = with_response(&stored, |resp| {
        let head = response_head(resp, head_request)?;
        client_head(resp, head.status, head.framing, &edits, &ctx.request_id)
    });
    let body = hit.body();
    let status = hit.status();
    let failed = |error: String| Outcome {
        status: Some(status),
        bytes_in: 0,
        bytes_out: 0,
        error: Some(error),
    };
    let Ok(Some(response)) = made else {
        return failed("a stored response head did not parse".into());
    };
    let empty = head_request || body.is_empty();
    let mut send = match respond.send_response(response, empty) {
        Ok(send) => send,
        Err(e) => return failed(format!("sending a cached response head: {e}")),
    };
    if empty {
        return ended(status, 0, None);
    }
    let length = body.len();
    let limit = ctx.snapshot.as_ref().map(|s| s.policy.send_timeout);
    match send_data(&mut send, body, true, limit).await {
        Ok(()) => ended(status, length, None),
        Err(e) => ended(status, 0, Some(format!("sending a cached response: {e}"))),
    }
}

fn ended(status: u16, bytes_out: usize, error: Option<String>) -> Outcome {
    Outcome {
        status: Some(status),
        bytes_in: 0,
        bytes_out,
        error,
    }
}
