//! menshen's own answers, whatever the client's protocol: what a policy denial, a route's fixed
//! response or redirect, or a failure to reach a backend says (status, fields, body). The
//! HTTP/1 engine writes them as bytes (`h1::own`), the HTTP/2 engine as frames (`h2::answer`);
//! both add the request id and a Date.
//!
//! An error answer (400-599) is chosen here, once for both engines: JSON for a client whose
//! `Accept` ranks it above HTML, else the site's page for the status (or the process-wide one)
//! in the client's language, else menshen's plain text; with `Vary` naming what it depended on.

use std::borrow::Cow;

use http::HeaderValue;

use super::ctx::Ctx;
use crate::observe::text::push_json_str;
use crate::policy::Denial;
use crate::route::router::{Canned, Redirect};
use crate::semantics::error_pages::{reason, Page, Values};
use crate::semantics::negotiate::prefers_json;

/// A response of menshen's own.
pub(crate) struct Own<'a> {
    pub(crate) status: u16,
    pub(crate) fields: &'a [(&'a [u8], &'a [u8])],
    pub(crate) body: &'a [u8],
}

const TEXT: &[u8] = b"text/plain; charset=utf-8";
const HTML: &[u8] = b"text/html; charset=utf-8";
const JSON: &[u8] = b"application/json";

/// What an error answer is chosen by and may show: the request's `Accept` and
/// `Accept-Language`, its Host, and its context (snapshot, site, request id, client).
pub(crate) struct Asking<'a> {
    pub(crate) accept: Option<&'a [u8]>,
    pub(crate) accept_language: Option<&'a [u8]>,
    pub(crate) host: &'a str,
    pub(crate) ctx: &'a Ctx,
}

impl<'a> Asking<'a> {
    /// A request's, with `field` looking its header fields up by name.
    pub(crate) fn new(
        ctx: &'a Ctx,
        host: &'a str,
        field: impl Fn(&str) -> Option<&'a [u8]>,
    ) -> Self {
        Self {
            accept: field("accept"),
            accept_language: field("accept-language"),
            host,
            ctx,
        }
    }

    /// A request whose fields were not read (a malformed head): nothing to negotiate by.
    pub(crate) fn unread(ctx: &'a Ctx) -> Self {
        Self {
            accept: None,
            accept_language: None,
            host: "",
            ctx,
        }
    }

    /// The request id, as sent in `X-Request-Id`.
    pub(crate) fn request_id(&self) -> &HeaderValue {
        &self.ctx.request_id
    }

    /// The page for `status`: the site's, else the process-wide one.
    fn page(&self, status: u16) -> Option<&'a Page> {
        let snapshot = self.ctx.snapshot.as_deref()?;
        let site = self.ctx.site.and_then(|i| snapshot.site_policy(i));
        let own = site.and_then(|s| s.error_pages.get(status));
        own.or_else(|| snapshot.error_pages.get(status))
    }

    /// The site's name (empty for a request of no site).
    fn site(&self) -> &'a str {
        let snapshot = self.ctx.snapshot.as_deref();
        let site = self
            .ctx
            .site
            .zip(snapshot)
            .and_then(|(i, s)| s.router.site_at(i));
        site.map_or("", |s| s.name.as_str())
    }
}

/// A policy denial, handed to `f`; its extra field (`Retry-After`) is kept whatever the body.
pub(crate) fn denial<R>(d: &Denial, asking: &Asking<'_>, f: impl FnOnce(&Own<'_>) -> R) -> R {
    let extra = d
        .header
        .as_ref()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
    if d.status >= 400 {
        return error_answer(d.status, &d.body, extra, asking, f);
    }
    // The https_only redirect: not an error.
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

/// An error answer for `status`: JSON, a page or the `plain` text (see the module's doc), with
/// `extra` among its fields.
fn error_answer<R>(
    status: u16,
    plain: &[u8],
    extra: Option<(&[u8], &[u8])>,
    asking: &Asking<'_>,
    f: impl FnOnce(&Own<'_>) -> R,
) -> R {
    let mut language = None;
    let mut vary: &[u8] = b"Accept";
    let (content_type, body): (&[u8], Cow<'_, [u8]>) = if asking.accept.is_some_and(prefers_json) {
        (JSON, json_body(status, asking).into())
    } else if let Some(page) = asking.page(status) {
        let (variant, varied) = page.choose(asking.accept_language);
        if varied {
            vary = b"Accept, Accept-Language";
        }
        language = variant.language.as_ref();
        let id = asking.ctx.request_id_str();
        let values = Values {
            request_id: &id,
            status,
            reason: reason(status),
            site: asking.site(),
            host: asking.host,
            client_ip: asking
                .ctx
                .client_ip
                .as_ref()
                .map_or("", |ip| ip.to_str().unwrap_or("")),
        };
        (HTML, variant.template.render(&values).into_bytes().into())
    } else {
        (TEXT, plain.into())
    };
    let none: (&[u8], &[u8]) = (b"", b"");
    let mut fields = [
        (&b"content-type"[..], content_type),
        (b"vary", vary),
        none,
        none,
    ];
    let mut n = 2;
    for field in [
        language.map(|l| (&b"content-language"[..], l.as_bytes())),
        extra,
    ]
    .into_iter()
    .flatten()
    {
        fields[n] = field;
        n += 1;
    }
    f(&Own {
        status,
        fields: &fields[..n],
        body: &body,
    })
}

/// `{"status":502,"error":"Bad Gateway","request_id":"..."}`.
fn json_body(status: u16, asking: &Asking<'_>) -> Vec<u8> {
    let mut out = String::with_capacity(96);
    out.push_str("{\"status\":");
    out.push_str(itoa::Buffer::new().format(status));
    out.push_str(",\"error\":");
    push_json_str(&mut out, reason(status));
    out.push_str(",\"request_id\":");
    push_json_str(&mut out, &asking.ctx.request_id_str());
    out.push_str("}\n");
    out.into_bytes()
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

/// The error answer for `status` (400, 502, 504, ...), handed to `f`.
pub(crate) fn error<R>(status: u16, asking: &Asking<'_>, f: impl FnOnce(&Own<'_>) -> R) -> R {
    let body = format!("{status} {}\n", reason(status));
    error_answer(status, body.as_bytes(), None, asking, f)
}

/// The status for a failed exchange with a backend: 504 for a timeout, else 502.
pub(crate) fn io_status(kind: std::io::ErrorKind) -> u16 {
    if kind == std::io::ErrorKind::TimedOut {
        504
    } else {
        502
    }
}
