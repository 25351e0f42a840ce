//! One request through the HTTP/1 engine, from its parsed head to its outcome: refused when
//! malformed, judged by the policy, answered by its route (a fixed response, a redirect) or
//! proxied, then counted and logged.

use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use pingora::server::ShutdownWatch;

use super::own;
use super::request::{request, BodyFraming, NotTaken, Req, Request};
use super::response::Persist;
use super::{send_timeout, write_out, Buffers, Outcome};
use crate::policy::Denial;
use crate::proxy::conn::{ClientConn, ConnFacts};
use crate::proxy::ctx::Ctx;
use crate::proxy::http1::MAX_HEADERS;
use crate::proxy::own::Asking;
use crate::proxy::phases::{Located, ReqView};
use crate::proxy::timed::within;
use crate::proxy::{access, over_connection_limit, Proxy};
use crate::route::Action;
use crate::semantics::error_pages;
use crate::semantics::fields::Field;
use crate::snapshot::Snapshot;

/// What the connection does after a request.
pub(super) enum Next {
    /// Waits for the next request, at most this many seconds (0: no limit).
    Keep(Option<Duration>),
    /// Closes.
    Close,
}

impl Proxy {
    /// Serves the request whose head is `head`; its body, if any, starts `input`.
    pub(super) async fn serve(
        &self,
        conn: &mut ClientConn,
        facts: &ConnFacts,
        head: &[u8],
        input: &mut BytesMut,
        bufs: &mut Buffers,
        shutdown: &ShutdownWatch,
    ) -> Next {
        // Left uninitialised: httparse fills what it parses (3 KiB not zeroed per request).
        let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut []);
        let mut classes = [Field::Other; MAX_HEADERS];
        let req = match parsed.parse_with_uninit_headers(head, &mut headers) {
            Ok(httparse::Status::Complete(n)) if n == head.len() => request(&parsed, &mut classes),
            Err(httparse::Error::TooManyHeaders) => {
                Err(NotTaken::Refused(431, "more than 100 header fields"))
            }
            // Never autocorrected (doubled spaces, a tab, a bare CR): a backend could read the
            // request otherwise than the policy did.
            _ => Err(NotTaken::Refused(400, "malformed request head")),
        };
        let req = match req {
            Ok(req) => req,
            Err(NotTaken::Refused(status, reason)) => {
                let raw = (parsed.method, parsed.path);
                self.refuse(conn, facts, &mut bufs.out, raw, status, reason)
                    .await;
                return Next::Close;
            }
        };
        let snapshot = self.state.load_full();
        let view = req.view(facts.tls.is_some());
        let at = Located::find(&view, &snapshot);
        let request = Request {
            req: &req,
            parsed: &parsed,
            fields: &classes,
            draining: *shutdown.borrow(),
        };
        let keepalive = snapshot.policy.keepalive_timeout;
        let place = (&view, &at);
        let outcome = self
            .one(conn, facts, &request, place, &snapshot, bufs, input)
            .await;
        match outcome.keep {
            true => Next::Keep(keepalive),
            false => Next::Close,
        }
    }

    /// Judges, answers or proxies, then logs one request.
    #[allow(clippy::too_many_arguments)]
    async fn one(
        &self,
        conn: &mut ClientConn,
        facts: &ConnFacts,
        request: &Request<'_>,
        (view, at): (&ReqView<'_>, &Located<'_, '_>),
        snapshot: &Arc<Snapshot>,
        bufs: &mut Buffers,
        input: &mut BytesMut,
    ) -> Outcome {
        conn.header_done();
        let req = request.req;
        let mut ctx = Ctx::new(&facts.gauges);
        let (client, received) = (&facts.peer, &req.received);
        let forwarding = (received.forwarded_for, req.request_id);
        let policy = &snapshot.policy;
        self.identify(&mut ctx, policy, client, forwarding, received.traceparent);
        let over_limit = conn.over_limit();
        let denial = match over_limit {
            true => Some(over_connection_limit()),
            false => self.decide(view, at, &mut ctx, snapshot),
        };
        ctx.snapshot = Some(snapshot.clone());
        let close = req.close || request.draining || over_limit;
        let outcome = match (&denial, at.route.map(|(_, r)| &r.action)) {
            (Some(denial), _) => {
                ctx.decision = Some(denial.rule.clone());
                let asking = request.asking(&ctx);
                let reply = |out: &mut Vec<u8>, p, h| own::denial(out, denial, &asking, p, h);
                self.answer(conn, bufs, input, req, &ctx, close, denial.status, reply)
                    .await
            }
            (None, Some(Action::Respond(c))) => {
                let id = ctx.request_id.as_bytes();
                let reply = |out: &mut Vec<u8>, p, h| own::canned(out, c, id, p, h);
                let status = c.status.as_u16();
                self.answer(conn, bufs, input, req, &ctx, close, status, reply)
                    .await
            }
            (None, Some(Action::Redirect(r))) => {
                let target = req.target.as_str();
                let id = ctx.request_id.as_bytes();
                let reply = |out: &mut Vec<u8>, p, h| own::redirect(out, r, target, id, p, h);
                let status = r.status.as_u16();
                self.answer(conn, bufs, input, req, &ctx, close, status, reply)
                    .await
            }
            (None, Some(Action::Proxy(action))) => {
                self.cached_or_proxy(conn, facts, request, action, &mut ctx, bufs, input)
                    .await
            }
            // The policy's route rule answers 404 first; this is not reached.
            (None, None) => not_found(conn, &mut bufs.out, request, &ctx).await,
        };
        let log = log_facts(facts, req, &outcome, &ctx);
        let error = outcome.error.as_ref().map(|e| e as &dyn std::fmt::Display);
        self.finish(&mut ctx, &log, error);
        outcome
    }

    /// Sends an answer of menshen's own to a request. The connection stays open only when the
    /// request's body (if any) is already all here, and is skipped.
    #[allow(clippy::too_many_arguments)]
    async fn answer(
        &self,
        conn: &mut ClientConn,
        bufs: &mut Buffers,
        input: &mut BytesMut,
        req: &Req<'_>,
        ctx: &Ctx,
        close: bool,
        status: u16,
        write: impl FnOnce(&mut Vec<u8>, Persist, bool),
    ) -> Outcome {
        let unread = match req.body {
            BodyFraming::None => Some(0),
            BodyFraming::Length(n) => usize::try_from(n).ok().filter(|&n| n <= input.len()),
            BodyFraming::Chunked => None,
        };
        let persist = match (close, unread) {
            (false, Some(_)) => Persist::KeepAlive {
                http10: req.version == 0,
            },
            _ => Persist::Close,
        };
        let head = req.method == http::Method::HEAD;
        let out = &mut bufs.out;
        out.clear();
        write(out, persist, head);
        let body_len = out.len() - head_len(out);
        if let Some(n) = unread {
            input.advance(n);
        }
        let sent = write_out(conn, out, send_timeout(ctx)).await;
        Outcome {
            status: Some(status),
            bytes_in: 0,
            bytes_out: body_len,
            keep: sent.is_ok() && persist != Persist::Close,
            error: sent.err().map(|e| e.to_string()),
        }
    }

    /// Answers a malformed request (`status`: 400, 405, 417, 431, 501; the connection closes
    /// after it) and logs it with what could be read of its request line.
    pub(super) async fn refuse(
        &self,
        conn: &mut ClientConn,
        facts: &ConnFacts,
        out: &mut Vec<u8>,
        (method, target): (Option<&str>, Option<&str>),
        status: u16,
        reason: &'static str,
    ) {
        conn.header_done();
        let snapshot = self.state.load_full();
        let mut ctx = Ctx::new(&facts.gauges);
        self.identify(&mut ctx, &snapshot.policy, &facts.peer, (None, None), None);
        ctx.snapshot = Some(snapshot);
        let rule: Arc<str> = Arc::from("bad_request");
        ctx.decision = Some(rule.clone());
        let denial = Denial {
            status,
            rule,
            header: None,
            body: bytes::Bytes::from(format!(
                "{status} {}: {reason}\n",
                error_pages::reason(status)
            )),
        };
        out.clear();
        let asking = Asking::unread(&ctx);
        own::denial(out, &denial, &asking, Persist::Close, false);
        let body_len = out.len() - head_len(out);
        let sent = write_out(conn, out, send_timeout(&ctx)).await;
        let log = access::Facts {
            listener_port: facts.listener_port,
            http_version: None,
            tls: facts.tls.as_deref(),
            host: None,
            method: method.unwrap_or(""),
            path: target.unwrap_or(""),
            query: None,
            user_agent: None,
            status: Some(status),
            bytes_in: 0,
            bytes_out: if sent.is_ok() { body_len } else { 0 },
            compression: None,
        };
        self.finish(&mut ctx, &log, Some(&reason));
        let _ = within(Some(Duration::from_secs(1)), conn_shutdown(conn)).await;
    }
}

async fn conn_shutdown(conn: &mut ClientConn) -> std::io::Result<()> {
    tokio::io::AsyncWriteExt::shutdown(conn).await
}

/// The length of the response head at the start of `out`.
fn head_len(out: &[u8]) -> usize {
    crate::proxy::http1::head_end(out, 0).unwrap_or(out.len())
}

/// Answers 404 (the connection closes after it).
async fn not_found(
    conn: &mut ClientConn,
    out: &mut Vec<u8>,
    request: &Request<'_>,
    ctx: &Ctx,
) -> Outcome {
    let head = request.req.method == http::Method::HEAD;
    let asking = request.asking(ctx);
    let sent = own::error_response(conn, out, 404, &asking, head, send_timeout(ctx)).await;
    Outcome {
        status: Some(404),
        bytes_in: 0,
        bytes_out: sent,
        keep: false,
        error: None,
    }
}

/// What the access log says of a request the HTTP/1 engine served.
fn log_facts<'a>(
    facts: &'a ConnFacts,
    req: &'a Req<'_>,
    outcome: &Outcome,
    ctx: &Ctx,
) -> access::Facts<'a> {
    access::Facts {
        listener_port: facts.listener_port,
        http_version: Some(if req.version == 0 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        }),
        tls: facts.tls.as_deref(),
        host: Some(req.host.as_str()),
        method: req.method_str,
        path: req.target.path(),
        query: req.target.query(),
        user_agent: req.user_agent,
        status: outcome.status,
        bytes_in: outcome.bytes_in as usize,
        bytes_out: outcome.bytes_out,
        compression: ctx.compression_outcome(),
    }
}
