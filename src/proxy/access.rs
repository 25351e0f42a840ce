//! Builds the access log line of a finished request (see `observe::access_log` for the writer).

use std::fmt::Write as _;
use std::time::SystemTime;

use pingora::prelude::*;

use super::{request_host, Ctx};
use crate::observe::access_log::{push_json_str, push_rfc3339_millis};

fn opt_str(out: &mut String, key: &str, v: Option<&str>) {
    out.push_str(key);
    match v {
        Some(v) => push_json_str(out, v),
        None => out.push_str("null"),
    }
}

/// One JSON object with the fields of the traceability requirement, in a fixed order.
pub fn line(session: &Session, ctx: &Ctx, status: u16) -> String {
    let req = session.req_header();
    let mut out = String::with_capacity(512);
    out.push_str("{\"ts\":\"");
    push_rfc3339_millis(&mut out, SystemTime::now());
    out.push('"');
    opt_str(
        &mut out,
        ",\"client_ip\":",
        ctx.client_ip.as_ref().and_then(|v| v.to_str().ok()),
    );
    match ctx.client.and_then(|c| c.port) {
        Some(p) => {
            let _ = write!(out, ",\"client_port\":{p}");
        }
        None => out.push_str(",\"client_port\":null"),
    }
    let snapshot = ctx.snapshot.as_deref();
    let listener = session
        .server_addr()
        .and_then(|a| a.as_inet())
        .and_then(|a| snapshot?.listener_names.get(&a.port()))
        .map(|n| &**n);
    opt_str(&mut out, ",\"listener\":", listener);
    let tls = session.digest().and_then(|d| d.ssl_digest.as_deref());
    let version = tls.map(|t| match &*t.version {
        "TLSv1_3" => "TLSv1.3",
        "TLSv1_2" => "TLSv1.2",
        other => other,
    });
    opt_str(&mut out, ",\"tls_version\":", version);
    opt_str(&mut out, ",\"tls_cipher\":", tls.map(|t| &*t.cipher));
    opt_str(&mut out, ",\"sni\":", ctx.sni.as_deref());
    opt_str(&mut out, ",\"host\":", request_host(req));
    opt_str(&mut out, ",\"method\":", Some(req.method.as_str()));
    opt_str(&mut out, ",\"path\":", Some(req.uri.path()));
    let log_query = ctx
        .site
        .and_then(|i| snapshot?.policy.sites.get(i))
        .is_none_or(|s| s.log_query);
    if log_query {
        opt_str(&mut out, ",\"query\":", req.uri.query());
    }
    let _ = write!(
        out,
        ",\"status\":{status},\"bytes_in\":{},\"bytes_out\":{},\"duration_ms\":{}",
        session.body_bytes_read(),
        session.body_bytes_sent(),
        ctx.start.elapsed().as_millis()
    );
    match ctx.tried.last() {
        Some(addr) => {
            let _ = write!(out, ",\"upstream\":\"{addr}\"");
        }
        None => out.push_str(",\"upstream\":null"),
    }
    match ctx.upstream_status {
        Some(s) => {
            let _ = write!(out, ",\"upstream_status\":{s}");
        }
        None => out.push_str(",\"upstream_status\":null"),
    }
    opt_str(&mut out, ",\"request_id\":", Some(&ctx.request_id_str()));
    let ua = req
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    opt_str(&mut out, ",\"user_agent\":", ua);
    out.push_str(",\"decision\":");
    match &ctx.decision {
        Some(rule) => push_json_str(&mut out, &format!("deny:{rule}")),
        None => out.push_str("\"allow\""),
    }
    out.push('}');
    out
}
