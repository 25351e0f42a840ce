//! What an HTTP/2 client is sent of menshen's own (`proxy::own`: denials, fixed responses,
//! redirects, errors) and how a stream's end is told to the access log.

use bytes::Bytes;
use h2::server::SendResponse;
use http::{header, HeaderName, HeaderValue, StatusCode};

use crate::proxy::attempts::Unanswered;
use crate::proxy::ctx::Ctx;
use crate::proxy::http1::with_date;
use crate::proxy::http2::send_data;
use crate::proxy::own::{self, Asking, Own};

/// How one stream ended, for the access log.
pub(super) struct Outcome {
    /// The status sent; `None` when none could be.
    pub(super) status: Option<u16>,
    /// Request body payload bytes read.
    pub(super) bytes_in: u64,
    /// Response body payload bytes sent.
    pub(super) bytes_out: usize,
    pub(super) error: Option<String>,
}

/// An answer of menshen's own as HTTP/2 fields and body.
pub(super) fn own_response(own: &Own<'_>, id: &HeaderValue) -> (http::Response<()>, Bytes) {
    let mut response = http::Response::new(());
    *response.status_mut() =
        StatusCode::from_u16(own.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    for (name, value) in own.fields {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(own.body.len()));
    headers.insert("x-request-id", id.clone());
    date(headers);
    (response, Bytes::copy_from_slice(own.body))
}

/// Adds a Date for now.
pub(super) fn date(headers: &mut http::HeaderMap) {
    with_date(|now| {
        if let Ok(value) = HeaderValue::from_str(now) {
            headers.insert(header::DATE, value);
        }
    });
}

/// Appends an edited response field to an HTTP/2 head; one h2 cannot carry is left out.
pub(super) fn append_field(headers: &mut http::HeaderMap, name: &str, value: &[u8]) {
    let name = http::HeaderName::from_bytes(name.as_bytes());
    if let (Ok(name), Ok(value)) = (name, HeaderValue::from_bytes(value)) {
        headers.append(name, value);
    }
}

/// Ends a backend's response head for the client: the request id, and a Date unless the
/// backend sent one.
pub(super) fn finish_head(headers: &mut http::HeaderMap, id: &HeaderValue, has_date: bool) {
    headers.insert("x-request-id", id.clone());
    if !has_date {
        date(headers);
    }
}

/// Sends an answer (its body unless `head`): the body bytes sent, and what failed.
pub(super) async fn answer(
    respond: &mut SendResponse<Bytes>,
    (response, body): (http::Response<()>, Bytes),
    head: bool,
    send: Option<std::time::Duration>,
) -> (usize, Option<String>) {
    let empty = head || body.is_empty();
    let mut stream = match respond.send_response(response, empty) {
        Ok(stream) => stream,
        Err(e) => return (0, Some(format!("sending the response: {e}"))),
    };
    if empty {
        return (0, None);
    }
    let len = body.len();
    match send_data(&mut stream, body, true, send).await {
        Ok(()) => (len, None),
        Err(e) => (0, Some(format!("sending the response: {e}"))),
    }
}

/// Answers a request no backend answered with `unanswered`'s status (when the client can still
/// get one; nothing of a response went to it yet).
pub(super) async fn unanswered(
    respond: &mut SendResponse<Bytes>,
    asking: Asking<'_>,
    (head, send): (bool, Option<std::time::Duration>),
    unanswered: Unanswered,
) -> Outcome {
    let bytes_out = match unanswered.status {
        None => 0,
        Some(status) => {
            let reply = own::error(status, &asking, |o| own_response(o, asking.request_id()));
            answer(respond, reply, head, send).await.0
        }
    };
    Outcome {
        status: unanswered.status,
        bytes_in: 0,
        bytes_out,
        error: Some(unanswered.error),
    }
}

/// What an error answer to the request `parts` is chosen by (`proxy::own`).
pub(super) fn asking<'a>(
    ctx: &'a Ctx,
    parts: &'a http::request::Parts,
    host: &'a str,
) -> Asking<'a> {
    Asking::new(ctx, host, |name| {
        parts.headers.get(name).map(HeaderValue::as_bytes)
    })
}
