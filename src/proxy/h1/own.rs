//! The HTTP/1 writer of menshen's own responses (`proxy::own`): policy denials, a route's fixed
//! response or redirect, refusals of malformed requests and failures to reach a backend. One
//! writer, so every one of them carries the same fields (request id, Date, Connection).

use std::time::Duration;

use super::response::Persist;
use super::{write_out, Outcome};
use crate::policy::Denial;
use crate::proxy::attempts::Unanswered;
use crate::proxy::conn::ClientConn;
use crate::proxy::http1::{push_date, push_field, status_line_for};
use crate::proxy::own::{self, Asking, Own};
use crate::route::router::{Canned, Redirect};

pub(super) use crate::proxy::own::io_status;

/// Writes `own` into `out` for an HTTP/1 client; a HEAD request gets the header only.
fn write(own: &Own<'_>, out: &mut Vec<u8>, request_id: &[u8], persist: Persist, head: bool) {
    status_line_for(out, own.status, None);
    for (name, value) in own.fields {
        push_field(out, name, value);
    }
    push_field(
        out,
        b"content-length",
        itoa::Buffer::new().format(own.body.len()).as_bytes(),
    );
    persist.push(out);
    push_field(out, b"x-request-id", request_id);
    push_date(out);
    out.extend_from_slice(b"\r\n");
    if !head {
        out.extend_from_slice(own.body);
    }
}

/// Writes a policy denial.
pub(super) fn denial(
    out: &mut Vec<u8>,
    d: &Denial,
    asking: &Asking<'_>,
    persist: Persist,
    head: bool,
) {
    let id = asking.request_id().as_bytes();
    own::denial(d, asking, |o| write(o, out, id, persist, head));
}

/// Writes a route's fixed response.
pub(super) fn canned(out: &mut Vec<u8>, c: &Canned, id: &[u8], persist: Persist, head: bool) {
    own::canned(c, |o| write(o, out, id, persist, head));
}

/// Writes a route's redirect; `target` is the canonical path and query.
pub(super) fn redirect(
    out: &mut Vec<u8>,
    r: &Redirect,
    target: &str,
    id: &[u8],
    persist: Persist,
    head: bool,
) {
    own::redirect(r, target, |o| write(o, out, id, persist, head));
}

/// Sends the error answer for `status` (the connection closes after it); the body bytes sent.
pub(super) async fn error_response(
    conn: &mut ClientConn,
    out: &mut Vec<u8>,
    status: u16,
    asking: &Asking<'_>,
    head: bool,
    send: Option<Duration>,
) -> usize {
    out.clear();
    let request_id = asking.request_id().as_bytes();
    let body_len = own::error(status, asking, |o| {
        write(o, out, request_id, Persist::Close, head);
        o.body.len()
    });
    let _ = write_out(conn, out, send).await;
    if head {
        0
    } else {
        body_len
    }
}

/// Answers a request no backend answered with `unanswered`'s status, when the client can still
/// get one (the connection closes after it); `bytes_in` of its body had been read.
pub(super) async fn answer_unanswered(
    conn: &mut ClientConn,
    out: &mut Vec<u8>,
    asking: &Asking<'_>,
    unanswered: Unanswered,
    (head_request, send): (bool, Option<Duration>),
    bytes_in: u64,
) -> Outcome {
    let bytes_out = match unanswered.status {
        None => 0,
        Some(status) => error_response(conn, out, status, asking, head_request, send).await,
    };
    Outcome {
        status: unanswered.status,
        bytes_in,
        bytes_out,
        keep: false,
        error: Some(unanswered.error),
    }
}
