//! One HTTP/2 request, from its fields to its outcome: refused when it cannot be made
//! canonical, judged by the policy, answered by its route (a fixed response, a redirect) or
//! exchanged with a backend, then counted and logged as an HTTP/1 request is.

use std::sync::Arc;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::{header, HeaderValue, Method};

use super::answer::{answer, asking, own_response, Outcome};
use crate::policy::Denial;
use crate::proxy::access;
use crate::proxy::conn::ConnFacts;
use crate::proxy::ctx::Ctx;
use crate::proxy::own;
use crate::proxy::phases::{Located, ReqView};
use crate::proxy::Proxy;
use crate::route::Action;
use crate::semantics::fields::content_length;
use crate::semantics::target::canonical;
use crate::snapshot::Snapshot;

impl Proxy {
    /// Serves one request of an HTTP/2 connection.
    pub(super) async fn h2_stream(
        &self,
        facts: &ConnFacts,
        request: http::Request<RecvStream>,
        mut respond: SendResponse<Bytes>,
    ) {
        let (parts, body) = request.into_parts();
        let snapshot = self.state.load_full();
        let mut ctx = self.h2_identified(facts, &parts, &snapshot);
        let mut log = log_facts(facts, &parts);
        let (target, host, length) = match mapped(&parts) {
            Ok(mapped) => mapped,
            Err(reason) => {
                let head = parts.method == Method::HEAD;
                let outcome = refuse(&mut ctx, &parts, &mut respond, head, reason).await;
                log.status = outcome.status;
                log.bytes_out = outcome.bytes_out;
                let error = outcome.error.as_ref().map(|e| e as &dyn std::fmt::Display);
                self.finish(&mut ctx, &log, error);
                return;
            }
        };
        let request = super::exchange::Request {
            parts: &parts,
            target: &target,
            host: &host,
            length,
        };
        let answering = self.h2_answer(facts, &request, body, &snapshot, &mut ctx, &mut respond);
        let outcome = answering.await;
        log.host = Some(host.as_str());
        log.path = target.path();
        log.query = target.query();
        log.status = outcome.status;
        log.bytes_in = outcome.bytes_in as usize;
        log.bytes_out = outcome.bytes_out;
        log.compression = ctx.compression_outcome();
        let error = outcome.error.as_ref().map(|e| e as &dyn std::fmt::Display);
        self.finish(&mut ctx, &log, error);
    }

    /// The request's context: its client, id and trace, and the snapshot it is served by.
    fn h2_identified(
        &self,
        facts: &ConnFacts,
        parts: &http::request::Parts,
        snapshot: &Arc<Snapshot>,
    ) -> Ctx {
        let mut ctx = Ctx::new(&facts.gauges);
        let field = |name: &str| parts.headers.get(name).map(HeaderValue::as_bytes);
        self.identify(
            &mut ctx,
            &snapshot.policy,
            &facts.peer,
            (field("x-forwarded-for"), field("x-request-id")),
            field("traceparent"),
        );
        ctx.snapshot = Some(snapshot.clone());
        ctx
    }

    /// The policy's decision on a canonical request, then the answer: a denial, the route's
    /// own answer, or the backend's.
    async fn h2_answer(
        &self,
        facts: &ConnFacts,
        request: &super::exchange::Request<'_>,
        body: RecvStream,
        snapshot: &Snapshot,
        ctx: &mut Ctx,
        respond: &mut SendResponse<Bytes>,
    ) -> Outcome {
        let parts = request.parts;
        let view = ReqView {
            host: Some(request.host.as_str()),
            method: &parts.method,
            path: request.target.path(),
            path_and_query: request.target.as_str(),
            header_bytes: header_bytes(parts),
            content_length: request.length,
            tls: facts.tls.is_some(),
        };
        let at = Located::find(&view, snapshot);
        let denial = self.decide(&view, &at, ctx, snapshot);
        let head = parts.method == Method::HEAD;
        let send = Some(snapshot.policy.send_timeout);
        let id = ctx.request_id.clone();
        let host = request.host.name();
        let (status, reply) = match (&denial, at.route.map(|(_, r)| &r.action)) {
            (None, Some(Action::Proxy(action))) => {
                return self
                    .h2_cached_or_exchange(facts, request, body, action, ctx, respond)
                    .await;
            }
            (Some(denial), _) => {
                ctx.decision = Some(denial.rule.clone());
                let ask = asking(ctx, parts, host);
                let reply = own::denial(denial, &ask, |o| own_response(o, &id));
                (denial.status, reply)
            }
            (None, Some(Action::Respond(c))) => {
                let reply = own::canned(c, |o| own_response(o, &id));
                (c.status.as_u16(), reply)
            }
            (None, Some(Action::Redirect(r))) => {
                let target = request.target.as_str();
                let reply = own::redirect(r, target, |o| own_response(o, &id));
                (r.status.as_u16(), reply)
            }
            (None, None) => {
                // The policy's route rule answers 404 first; this is not reached.
                let ask = asking(ctx, parts, host);
                (404, own::error(404, &ask, |o| own_response(o, &id)))
            }
        };
        own_outcome(status, answer(respond, reply, head, send).await)
    }
}

/// What the access log says of a stream before it is understood.
fn log_facts<'a>(facts: &'a ConnFacts, parts: &'a http::request::Parts) -> access::Facts<'a> {
    access::Facts {
        listener_port: facts.listener_port,
        http_version: Some("HTTP/2"),
        tls: facts.tls.as_deref(),
        host: None,
        method: parts.method.as_str(),
        path: parts.uri.path_and_query().map_or("", |p| p.as_str()),
        query: None,
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
        status: None,
        bytes_in: 0,
        bytes_out: 0,
        compression: None,
    }
}

/// The size of a request's head, as an HTTP/1 one would have: what `max_head_bytes` limits.
fn header_bytes(parts: &http::request::Parts) -> usize {
    let fields = parts.headers.iter();
    let fields = fields
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>();
    fields + parts.uri.path_and_query().map_or(0, |p| p.as_str().len())
}

/// Refuses a request that cannot be made canonical with 400.
async fn refuse(
    ctx: &mut Ctx,
    parts: &http::request::Parts,
    respond: &mut SendResponse<Bytes>,
    head: bool,
    reason: &'static str,
) -> Outcome {
    let send = ctx.snapshot.as_ref().map(|s| s.policy.send_timeout);
    let denial = bad_request(reason);
    ctx.decision = Some(denial.rule.clone());
    let asking = asking(ctx, parts, "");
    let reply = own::denial(&denial, &asking, |o| own_response(o, &ctx.request_id));
    let (bytes_out, error) = answer(respond, reply, head, send).await;
    Outcome {
        status: Some(400),
        bytes_in: 0,
        bytes_out,
        error: Some(error.unwrap_or_else(|| reason.to_owned())),
    }
}

/// The canonical target and Host of a request, and its Content-Length; or why it is refused.
/// The `:authority` is the Host; a `Host` field that names another is refused (RFC 9113
/// 8.3.1), as are CONNECT (no tunnels) and a bad Content-Length.
pub(super) fn mapped(
    parts: &http::request::Parts,
) -> Result<
    (
        crate::semantics::target::Target<'_>,
        crate::semantics::target::Host<'_>,
        Option<u64>,
    ),
    &'static str,
> {
    if parts.method == Method::CONNECT {
        return Err("CONNECT is not served");
    }
    let host_field = match parts.headers.get_all(header::HOST).iter().count() {
        0 => None,
        1 => parts.headers.get(header::HOST).map(|h| h.to_str()),
        _ => return Err("repeated Host"),
    };
    let host_field = host_field.transpose().map_err(|_| "Host is not text")?;
    let authority = parts.uri.authority().map(|a| a.as_str());
    if let (Some(a), Some(h)) = (authority, host_field) {
        if !a.eq_ignore_ascii_case(h) {
            return Err(":authority and Host differ");
        }
    }
    let raw_target = parts.uri.path_and_query().map_or("", |p| p.as_str());
    let (target, host) = canonical(raw_target, authority.or(host_field))
        .map_err(|_| "request target or host cannot be made canonical")?;
    let mut length = None;
    for value in parts.headers.get_all(header::CONTENT_LENGTH) {
        let n = content_length(value.as_bytes()).ok_or("bad Content-Length")?;
        if length.is_some_and(|l| l != n) {
            return Err("conflicting Content-Length");
        }
        length = Some(n);
    }
    Ok((target, host, length))
}

fn bad_request(reason: &str) -> Denial {
    Denial {
        status: 400,
        rule: Arc::from("bad_request"),
        header: None,
        body: Bytes::from(format!("400 Bad Request: {reason}\n")),
    }
}

fn own_outcome(status: u16, (bytes_out, error): (usize, Option<String>)) -> Outcome {
    Outcome {
        status: Some(status),
        bytes_in: 0,
        bytes_out,
        error,
    }
}
