//! Responses the HTTP/1 engine writes itself: policy denials, a route's fixed response or
//! redirect, refusals of malformed requests and failures to reach a backend. One writer, so
//! every one of them carries the same fields (request id, Date, Connection).

use std::time::Duration;

use super::response::{push_date, push_field, status_line_for};
use super::write_out;
use crate::policy::Denial;
use crate::proxy::conn::ClientConn;
use crate::proxy::respond::error_body;
use crate::route::router::{Canned, Redirect};

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

/// A response of menshen's own.
pub(super) struct Own<'a> {
    pub(super) status: u16,
    pub(super) fields: &'a [(&'a [u8], &'a [u8])],
    pub(super) body: &'a [u8],
}

impl<'a> Own<'a> {
    /// Writes it into `out`; a HEAD request gets the header only.
    pub(super) fn write(&self, out: &mut Vec<u8>, request_id: &[u8], persist: Persist, head: bool) {
        status_line_for(out, self.status, None);
        for (name, value) in self.fields {
            push_field(out, name, value);
        }
        push_field(
            out,
            b"content-length",
            itoa::Buffer::new().format(self.body.len()).as_bytes(),
        );
        persist.push(out);
        push_field(out, b"x-request-id", request_id);
        push_date(out);
        out.extend_from_slice(b"\r\n");
        if !head {
            out.extend_from_slice(self.body);
        }
    }
}

const TEXT: &[u8] = b"text/plain; charset=utf-8";

/// Writes a policy denial.
pub(super) fn denial(out: &mut Vec<u8>, d: &Denial, id: &[u8], persist: Persist, head: bool) {
    let extra = d
        .header
        .as_ref()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
    let fields: &[(&[u8], &[u8])] = match &extra {
        Some(extra) => &[(b"content-type", TEXT), *extra],
        None => &[(b"content-type", TEXT)],
    };
    Own {
        status: d.status,
        fields,
        body: &d.body,
    }
    .write(out, id, persist, head);
}

/// Writes a route's fixed response.
pub(super) fn canned(out: &mut Vec<u8>, c: &Canned, id: &[u8], persist: Persist, head: bool) {
    let fields: Vec<(&[u8], &[u8])> = c
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
        .collect();
    Own {
        status: c.status.as_u16(),
        fields: &fields,
        body: &c.body,
    }
    .write(out, id, persist, head);
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
    let location = if r.keep_path {
        format!("{}{}", r.to.trim_end_matches('/'), target)
    } else {
        r.to.clone()
    };
    Own {
        status: r.status.as_u16(),
        fields: &[(b"location", location.as_bytes())],
        body: b"",
    }
    .write(out, id, persist, head);
}

/// The status for a failed exchange with a backend: 504 for a timeout, else 502.
pub(super) fn io_status(kind: std::io::ErrorKind) -> u16 {
    if kind == std::io::ErrorKind::TimedOut {
        504
    } else {
        502
    }
}

/// Sends the plain error response for `status` (the connection closes after it); the body
/// bytes sent.
pub(super) async fn error_response(
    conn: &mut ClientConn,
    out: &mut Vec<u8>,
    status: u16,
    request_id: &[u8],
    head: bool,
    send: Option<Duration>,
) -> usize {
    let body = error_body(status);
    out.clear();
    Own {
        status,
        fields: &[(b"content-type", TEXT)],
        body: body.as_bytes(),
    }
    .write(out, request_id, Persist::Close, head);
    let _ = write_out(conn, out, send).await;
    if head {
        0
    } else {
        body.len()
    }
}
