//! The heads an HTTP/1 client gets of a backend's response: interim ones as they come, the
//! final one with the edited fields (`response_edits`), the request id, a Date and the
//! connection's persistence, or a `101 Switching Protocols`.

use bytes::{Buf, BytesMut};

use super::write_out;
use crate::proxy::attempts::Unanswered;
use crate::proxy::conn::ClientConn;
use crate::proxy::http1::{
    push_date, push_field, read_response_head, response_head, status_line_for, with_response,
    Framing, ResponseHead, MAX_INTERIM,
};
use crate::proxy::own::io_status;
use crate::proxy::response_edits::{response_fields, HopByHop, ResponseEdits};
use crate::route::upstream_conn::UpstreamConn;
use crate::semantics::fields::{field, Field};

/// What the connection does after a response, as the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Persist {
    /// `Connection: close`, and the connection closes.
    Close,
    /// Kept open; an HTTP/1.0 client is told `Connection: keep-alive`.
    KeepAlive { http10: bool },
}

impl Persist {
    pub(super) fn push(self, out: &mut Vec<u8>) {
        match self {
            Persist::Close => push_field(out, b"connection", b"close"),
            Persist::KeepAlive { http10: true } => push_field(out, b"connection", b"keep-alive"),
            Persist::KeepAlive { http10: false } => {}
        }
    }
}

/// Writes the response header an HTTP/1 client gets into `out`: `response_fields`, the
/// request id, a Date if the backend sent none, and the framing. `framing` is the backend's;
/// `rechunk`: a body the backend ends by closing goes to the client chunked, so that a backend
/// failing mid-body reaches it as a truncated body.
pub(super) fn client_response_head(
    out: &mut Vec<u8>,
    resp: &httparse::Response<'_, '_>,
    framing: Framing,
    rechunk: bool,
    edits: &ResponseEdits<'_>,
    request_id: &[u8],
    persist: Persist,
) {
    status_line(out, resp);
    let has_date = response_fields(resp, framing, edits, |name, value| {
        push_field(out, name.as_bytes(), value)
    });
    push_field(out, b"x-request-id", request_id);
    if !has_date {
        // A response forwarded without a Date gets one (RFC 9110 6.6.1).
        push_date(out);
    }
    if rechunk && framing == Framing::UntilClose {
        push_field(out, b"transfer-encoding", b"chunked");
    }
    persist.push(out);
    out.extend_from_slice(b"\r\n");
}

/// Writes the `101 Switching Protocols` the client gets: the backend's, less hop-by-hop fields
/// but for `Upgrade`, with `Connection: upgrade`.
pub(super) fn upgrade_head(out: &mut Vec<u8>, resp: &httparse::Response<'_, '_>, id: &[u8]) {
    status_line(out, resp);
    let hop = HopByHop::of_response(resp);
    for h in resp.headers.iter() {
        let f = field(h.name);
        if f == Field::Upgrade || (!hop.drops(f, h.name) && f != Field::XRequestId) {
            push_field(out, h.name.as_bytes(), h.value);
        }
    }
    push_field(out, b"connection", b"upgrade");
    push_field(out, b"x-request-id", id);
    out.extend_from_slice(b"\r\n");
}

/// Writes the status line of `resp` (HTTP/1.1, the backend's reason or the standard one).
fn status_line(out: &mut Vec<u8>, resp: &httparse::Response<'_, '_>) {
    status_line_for(out, resp.code.unwrap_or(502), resp.reason);
}

/// Writes an interim response for the client: the backend's, less its connection's fields.
pub(super) fn interim_head(out: &mut Vec<u8>, resp: &httparse::Response<'_, '_>) {
    status_line(out, resp);
    let hop = HopByHop::of_response(resp);
    for h in resp.headers.iter() {
        if !hop.drops(field(h.name), h.name) {
            push_field(out, h.name.as_bytes(), h.value);
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Reads the interim and final response heads of one exchange: interim ones (103 Early Hints,
/// ...) go to the client as they come, as nginx passes them. `Ok` with the final head
/// parsed and written into `out` by `write`, and its length in `up`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn final_head(
    conn: &mut ClientConn,
    stream: &mut UpstreamConn,
    up: &mut BytesMut,
    out: &mut Vec<u8>,
    mut end: usize,
    (read_timeout, send): (Option<std::time::Duration>, Option<std::time::Duration>),
    head_request: bool,
    mut write: impl FnMut(&mut Vec<u8>, &httparse::Response<'_, '_>, &ResponseHead),
) -> Result<(ResponseHead, usize), Unanswered> {
    let mut interim = 0;
    let mut received = true;
    loop {
        out.clear();
        let parsed = with_response(&up[..end], |resp| {
            let head = response_head(resp, head_request)?;
            if head.status < 200 && head.status != 101 {
                interim_head(out, resp);
            } else {
                write(out, resp, &head);
            }
            Some(head)
        });
        let head = match parsed {
            Ok(Some(head)) if head.status < 200 && head.status != 101 && interim == MAX_INTERIM => {
                return Err(Unanswered::answer(502, "too many interim responses"))
            }
            Ok(Some(head)) => head,
            Ok(None) => return Err(Unanswered::answer(502, "bad status or Content-Length")),
            Err(e) => return Err(Unanswered::answer(502, e)),
        };
        if head.status >= 200 || head.status == 101 {
            return Ok((head, end));
        }
        interim += 1;
        if let Err(e) = write_out(conn, out, send).await {
            let error = format!("writing an interim response: {e}");
            return Err(Unanswered::client_gone(error));
        }
        up.advance(end);
        end = read_response_head(stream, up, read_timeout, &mut received)
            .await
            .map_err(|(kind, error)| Unanswered::answer(io_status(kind), error))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_backend_fields_go_out_clean() {
        let raw = b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Type : text/plain\r\nConnection: x-secret\r\nX-Secret: 1\r\nServer: gunicorn\r\nAlt-Svc: h3=\":443\"\r\nContent-Length: 0\r\n\r\n";
        let server = http::HeaderValue::from_static("menshen");
        let edits = ResponseEdits {
            remove: &[],
            add: &[],
            hsts: None,
            server: Some(&server),
            alt_svc: None,
            coding: None,
            vary: false,
            cache: None,
        };
        let mut out = Vec::new();
        with_response(raw, |r| {
            let persist = Persist::KeepAlive { http10: false };
            client_response_head(
                &mut out,
                r,
                Framing::Length(0),
                false,
                &edits,
                b"id",
                persist,
            )
        })
        .expect("lenient fields parse");
        let text = String::from_utf8(out).expect("text");
        assert!(text.contains("server: menshen\r\n"), "{text}");
        assert!(!text.contains("gunicorn"), "{text}");
        assert!(!text.to_ascii_lowercase().contains("alt-svc"), "{text}");
        assert!(text.contains("X-Folded: a   b\r\n"), "{text}");
        assert!(text.contains("Content-Type: text/plain\r\n"), "{text}");
        assert!(!text.to_ascii_lowercase().contains("x-secret"), "{text}");
        assert!(text.contains("Content-Length: 0\r\n"), "{text}");
    }
}
