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
        let mut ctx = Ctx::new(&facts.gauges);
        let field = |name: &str| parts.headers.get(name).map(HeaderValue::as_bytes);
        let forwarded_for = field("x-forwarded-for");
        self.identify(
            &mut ctx,
            &snapshot.policy,
            &facts.peer,
            (forwarded_for, field("x-request-id")),
            field("traceparent"),
        );
        ctx.snapshot = Some(snapshot.clone());
        let head = parts.method == Method::HEAD;
        let send = Some(snapshot.policy.send_timeout);
        let raw_target = parts.uri.path_and_query().map_or("", |p| p.as_str());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        let mut log = access::Facts {
            listener_port: facts.listener_port,
            http_version: Some("HTTP/2"),
            tls: facts.tls.as_deref(),
            host: None,
            method: parts.method.as_str(),
            path: raw_target,
            query: None,
            user_agent,
            status: 0,
            bytes_in: 0,
            bytes_out: 0,
            compression: None,
        };
        let (target, host, length) = match mapped(&parts) {
            Ok(mapped) => mapped,
            Err(reason) => {
                let denial = bad_request(reason);
                ctx.decision = Some(denial.rule.clone());
                let asking = asking(&ctx, &parts, "");
                let reply = own::denial(&denial, &asking, |o| own_response(o, &ctx.request_id));
                let (sent, error) = answer(&mut respond, reply, head, send).await;
                log.status = 400;
                log.bytes_out = sent;
                let error = error.unwrap_or_else(|| reason.to_owned());
                self.finish(&mut ctx, &log, Some(&error));
                return;
            }
        };
        let header_bytes = parts
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>()
            + raw_target.len();
        let view = ReqView {
            host: Some(host.as_str()),
            method: &parts.method,
            path: target.path(),
            path_and_query: target.as_str(),
            header_bytes,
            content_length: length,
            tls: facts.tls.is_some(),
        };
        let at = Located::find(&view, &snapshot);
        let denial = self.decide(&view, &at, &mut ctx, &snapshot);
        let id = ctx.request_id.clone();
        let outcome = match (&denial, at.route.map(|(_, r)| &r.action)) {
            (Some(denial), _) => {
                ctx.decision = Some(denial.rule.clone());
                let ask = asking(&ctx, &parts, host.name());
                let reply = own::denial(denial, &ask, |o| own_response(o, &id));
                own_outcome(denial.status, answer(&mut respond, reply, head, send).await)
            }
            (None, Some(Action::Respond(c))) => {
                let reply = own::canned(c, |o| own_response(o, &id));
                own_outcome(
                    c.status.as_u16(),
                    answer(&mut respond, reply, head, send).await,
                )
            }
            (None, Some(Action::Redirect(r))) => {
                let reply = own::redirect(r, target.as_str(), |o| own_response(o, &id));
                own_outcome(
                    r.status.as_u16(),
                    answer(&mut respond, reply, head, send).await,
                )
            }
            (None, Some(Action::Proxy(action))) => {
                let request = super::exchange::Request {
                    parts: &parts,
                    target: &target,
                    host: &host,
                    length,
                };
                self.h2_cached_or_exchange(facts, &request, body, action, &mut ctx, &mut respond)
                    .await
            }
            (None, None) => {
                // The policy's route rule answers 404 first; this is not reached.
                let ask = asking(&ctx, &parts, host.name());
                let reply = own::error(404, &ask, |o| own_response(o, &id));
                own_outcome(404, answer(&mut respond, reply, head, send).await)
            }
        };
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
        status,
        bytes_in: 0,
        bytes_out,
        error,
    }
}
