//! menshen's own answers, whatever the client's protocol: what a policy denial, a route's fixed
//! response or redirect, or a failure to reach a backend says (status, fields, body). The
//! HTTP/1 engine writes them as bytes (`h1::own`), the HTTP/2 engine as frames (`h2::answer`);
//! both add the request id and a Date.

use crate::policy::Denial;
use crate::route::router::{Canned, Redirect};

/// A response of menshen's own.
pub(crate) struct Own<'a> {
    pub(crate) status: u16,
    pub(crate) fields: &'a [(&'a [u8], &'a [u8])],
    pub(crate) body: &'a [u8],
}

const TEXT: &[u8] = b"text/plain; charset=utf-8";

/// A policy denial, handed to `f`.
pub(crate) fn denial<R>(d: &Denial, f: impl FnOnce(&Own<'_>) -> R) -> R {
    let extra = d
        .header
        .as_ref()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
    let fields: &[(&[u8], &[u8])] = match &extra {
        Some(extra) => &[(b"content-type", TEXT), *extra],
        None => &[(b"content-type", TEXT)],
    };
    f(&Own {
        status: d.status,
        fields,
        body: &d.body,
    })
}

/// A route's fixed response, handed to `f`.
pub(crate) fn canned<R>(c: &Canned, f: impl FnOnce(&Own<'_>) -> R) -> R {
    let fields: Vec<(&[u8], &[u8])> = c
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
        .collect();
    f(&Own {
        status: c.status.as_u16(),
        fields: &fields,
        body: &c.body,
    })
}

/// A route's redirect for the canonical path and query `target`, handed to `f`.
pub(crate) fn redirect<R>(r: &Redirect, target: &str, f: impl FnOnce(&Own<'_>) -> R) -> R {
    let location = if r.keep_path {
        format!("{}{}", r.to.trim_end_matches('/'), target)
    } else {
        r.to.clone()
    };
    f(&Own {
        status: r.status.as_u16(),
        fields: &[(b"location", location.as_bytes())],
        body: b"",
    })
}

/// The plain error response for `status` (400, 502, 504, ...), handed to `f`.
pub(crate) fn error<R>(status: u16, f: impl FnOnce(&Own<'_>) -> R) -> R {
    let body = error_body(status);
    f(&Own {
        status,
        fields: &[(b"content-type", TEXT)],
        body: body.as_bytes(),
    })
}

/// The body of a plain error response, e.g. `502 Bad Gateway`.
fn error_body(status: u16) -> String {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    format!("{status} {reason}\n")
}

/// The status for a failed exchange with a backend: 504 for a timeout, else 502.
pub(crate) fn io_status(kind: std::io::ErrorKind) -> u16 {
    if kind == std::io::ErrorKind::TimedOut {
        504
    } else {
        502
    }
}
