//! Builds the access log line of a finished request (see `observe::access_log` for the writer).

use std::fmt::Write as _;
use std::time::SystemTime;

use pingora::protocols::tls::SslDigest;

use super::ctx::Ctx;
use crate::observe::access_log::{push_json_str, push_rfc3339_millis};
use crate::observe::metrics::tls_version_label;

fn opt_str(out: &mut String, key: &str, v: Option<&str>) {
    out.push_str(key);
    match v {
        Some(v) => push_json_str(out, v),
        None => out.push_str("null"),
    }
}

/// Appends `addr` as text: formatted once per backend and thread, not per request.
fn push_addr(out: &mut String, addr: std::net::SocketAddr) {
    thread_local! {
        static LAST: std::cell::RefCell<(Option<std::net::SocketAddr>, String)> =
            const { std::cell::RefCell::new((None, String::new())) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != Some(addr) {
            last.1.clear();
            let _ = write!(last.1, "{addr}");
            last.0 = Some(addr);
        }
        out.push_str(&last.1);
    });
}

fn push_opt_num<N: itoa::Integer>(out: &mut String, n: Option<N>) {
    match n {
        Some(n) => out.push_str(itoa::Buffer::new().format(n)),
        None => out.push_str("null"),
    }
}

/// What the access log says of a request, whichever loop served it.
pub struct Facts<'a> {
    /// Port of the listener the request arrived at.
    pub listener_port: Option<u16>,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`; `None` when no request line was read.
    pub http_version: Option<&'static str>,
    /// The TLS connection's version and cipher.
    pub tls: Option<&'a SslDigest>,
    /// The Host header (or HTTP/2 authority).
    pub host: Option<&'a str>,
    /// Method.
    pub method: &'a str,
    /// Path without the query.
    pub path: &'a str,
    /// Query, if the request had one.
    pub query: Option<&'a str>,
    /// User-Agent.
    pub user_agent: Option<&'a str>,
    /// The status sent; `None` when the client got no response (logged as 0, as Envoy does).
    pub status: Option<u16>,
    /// Request body bytes read.
    pub bytes_in: usize,
    /// Response body bytes sent.
    pub bytes_out: usize,
    /// The response's compression (`gzip`, `br`, `zstd`, or `skipped:REASON`); none when the
    /// site does not compress or no backend answered.
    pub compression: Option<&'static str>,
}

/// One JSON object with the fields of the traceability requirement, in a fixed order.
pub fn line(f: &Facts<'_>, ctx: &Ctx, elapsed: std::time::Duration) -> String {
    let mut out = String::with_capacity(512);
    out.push_str("{\"ts\":\"");
    push_rfc3339_millis(&mut out, SystemTime::now());
    out.push('"');
    push_connection(&mut out, f, ctx);
    push_request(&mut out, f, ctx);
    push_answer(&mut out, f, elapsed);
    push_backend(&mut out, ctx);
    opt_str(&mut out, ",\"cache\":", ctx.cache.map(|c| c.as_str()));
    opt_str(&mut out, ",\"compression\":", f.compression);
    opt_str(&mut out, ",\"request_id\":", Some(&ctx.request_id_str()));
    opt_str(&mut out, ",\"user_agent\":", f.user_agent);
    out.push_str(",\"decision\":");
    match &ctx.decision {
        Some(rule) => push_json_str(&mut out, &format!("deny:{rule}")),
        None => out.push_str("\"allow\""),
    }
    out.push('}');
    out
}

/// Who connected, where, and over which TLS: `client_ip` to `sni`.
fn push_connection(out: &mut String, f: &Facts<'_>, ctx: &Ctx) {
    opt_str(
        out,
        ",\"client_ip\":",
        ctx.client_ip.as_ref().and_then(|v| v.to_str().ok()),
    );
    out.push_str(",\"client_port\":");
    push_opt_num(out, ctx.client.and_then(|c| c.port));
    let listener = f
        .listener_port
        .and_then(|port| ctx.snapshot.as_deref()?.listener_names.get(&port))
        .map(|n| &**n);
    opt_str(out, ",\"listener\":", listener);
    let version = f.tls.map(|t| tls_version_label(&t.version));
    opt_str(out, ",\"tls_version\":", version);
    opt_str(out, ",\"tls_cipher\":", f.tls.map(|t| &*t.cipher));
    opt_str(out, ",\"sni\":", ctx.sni.as_deref());
}

/// What was asked of which site and route: `host` to `query` (left out when the site does not
/// log queries).
fn push_request(out: &mut String, f: &Facts<'_>, ctx: &Ctx) {
    let snapshot = ctx.snapshot.as_deref();
    opt_str(out, ",\"host\":", f.host);
    let site = ctx
        .site
        .and_then(|i| Some(&*snapshot?.router.site_at(i)?.name));
    opt_str(out, ",\"site\":", site);
    opt_str(out, ",\"route\":", ctx.route.map(|_| ctx.route_prefix()));
    opt_str(out, ",\"http_version\":", f.http_version);
    opt_str(out, ",\"method\":", Some(f.method));
    opt_str(out, ",\"path\":", Some(f.path));
    let log_query = ctx
        .site
        .and_then(|i| snapshot?.site_policy(i))
        .is_none_or(|s| s.log_query);
    if log_query {
        opt_str(out, ",\"query\":", f.query);
    }
}

/// What the client got: `status` to `duration_ms`.
fn push_answer(out: &mut String, f: &Facts<'_>, elapsed: std::time::Duration) {
    let mut num = itoa::Buffer::new();
    out.push_str(",\"status\":");
    out.push_str(num.format(f.status.unwrap_or(0)));
    out.push_str(",\"bytes_in\":");
    out.push_str(num.format(f.bytes_in));
    out.push_str(",\"bytes_out\":");
    out.push_str(num.format(f.bytes_out));
    out.push_str(",\"duration_ms\":");
    out.push_str(num.format(elapsed.as_millis()));
}

/// The backend last tried and how it answered: `upstream` to `upstream_first_byte_ms`.
fn push_backend(out: &mut String, ctx: &Ctx) {
    match ctx.tried.last() {
        Some(addr) => {
            out.push_str(",\"upstream\":\"");
            push_addr(out, *addr);
            out.push('"');
        }
        None => out.push_str(",\"upstream\":null"),
    }
    out.push_str(",\"tries\":");
    out.push_str(itoa::Buffer::new().format(ctx.tried.len()));
    out.push_str(",\"upstream_status\":");
    push_opt_num(out, ctx.upstream_status);
    out.push_str(",\"upstream_connect_ms\":");
    push_opt_num(out, ctx.upstream_connect.map(|d| d.as_millis()));
    out.push_str(",\"upstream_first_byte_ms\":");
    push_opt_num(out, ctx.upstream_first_byte.map(|d| d.as_millis()));
}
