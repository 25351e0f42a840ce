//! The phases both engines run (HTTP/1 in `h1`, HTTP/2 in `h2`): who is asking, which site and route, the policy's decision, the backend, the
//! forwarding fields, the site's response edits, the access log line and the counters.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderValue;
use pingora::prelude::*;

use super::access;
use super::attempts::Unanswered;
use super::ctx::{proxy_action, Ctx};
use super::Proxy;
use crate::observe::metrics::UpstreamErrorKind;
use crate::observe::trace::{Ended, RequestTrace, Tracer};
use crate::policy::client;
use crate::policy::ip::canonical;
use crate::policy::{Denial, Request};
use crate::proxy::own::io_status;
use crate::route::retry::{Failure, Stake};
use crate::route::router::{strip_port, ProxyAction};
use crate::route::upstream::HashKey;
use crate::route::upstream_conn::{self, TlsTarget, UpstreamConn};
use crate::snapshot::Snapshot;
use crate::tls::client_auth::ClientCertCheck;

pub(super) fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// What the policy and the proxy read of a request header, whichever engine read it.
pub(crate) struct ReqView<'a> {
    /// The Host header (or an HTTP/2 authority) as received.
    pub(super) host: Option<&'a str>,
    pub(super) method: &'a http::Method,
    pub(super) path: &'a str,
    pub(super) path_and_query: &'a str,
    pub(super) header_bytes: usize,
    pub(super) content_length: Option<u64>,
    pub(super) tls: bool,
}

/// The client end of a connection, as every request on it sees it.
pub(crate) struct Peer {
    /// The socket peer, or the PROXY protocol address.
    pub(super) addr: SocketAddr,
    /// `addr`'s IP as header text, when formatted once for the connection.
    pub(super) ip_text: Option<HeaderValue>,
    /// The TLS connection's SNI.
    pub(super) sni: Option<Arc<str>>,
    /// What the TLS handshake's client certificate check settled, for a site with one.
    pub(super) client_cert: Option<Arc<ClientCertCheck>>,
}

/// Why no connection to a backend was made.
#[derive(Debug)]
pub(super) enum Unconnected {
    /// The failure is counted against the backend; the request tries another one.
    TryAnother,
    /// The request fails: what the client gets.
    Fail(Unanswered),
}

/// The site and route a request is for: lookups only, no side effect.
pub(crate) struct Located<'r, 's> {
    /// Host, lowercase, without port.
    pub(super) host: Cow<'r, str>,
    pub(super) site: Option<(usize, &'s crate::route::Site)>,
    pub(super) route: Option<(usize, &'s crate::route::router::Route)>,
}

impl<'r, 's> Located<'r, 's> {
    pub(super) fn find(req: &ReqView<'r>, snapshot: &'s Snapshot) -> Self {
        let host = lowercase(strip_port(req.host.unwrap_or("")));
        let site = snapshot
            .router
            .find(&host)
            .and_then(|i| snapshot.router.site_at(i).map(|s| (i, s)));
        let route = site.and_then(|(_, s)| {
            let r = s.find_route(req.path, req.method)?;
            s.routes.get(r).map(|route| (r, route))
        });
        Self { host, site, route }
    }
}

impl Proxy {
    /// Who is asking: the client address (PROXY header / trusted X-Forwarded-For), the request
    /// id (a trusted proxy's, or a new one), the TLS connection's SNI and, when traces are
    /// exported, the request's trace (joined to the client's `traceparent`), into `ctx`.
    pub(super) fn identify(
        &self,
        ctx: &mut Ctx,
        policy: &crate::policy::Policy,
        peer: &Peer,
        (forwarded_for, request_id): (Option<&[u8]>, Option<&[u8]>),
        traceparent: Option<&[u8]>,
    ) {
        let client = client::resolve(peer.addr, forwarded_for, &policy.trusted_proxies);
        ctx.client = Some(client);
        ctx.client_ip = match &peer.ip_text {
            Some(text) if client.ip == canonical(peer.addr.ip()) => Some(text.clone()),
            _ => HeaderValue::from_str(&client.ip.to_string()).ok(),
        };
        let trusted_id = request_id
            .filter(|id| client.via_trusted_proxy && !id.is_empty())
            .and_then(|id| HeaderValue::from_bytes(id).ok());
        ctx.request_id = trusted_id.unwrap_or_else(|| self.request_ids.next());
        ctx.sni = peer.sni.clone();
        ctx.client_cert = peer.client_cert.clone();
        if let Some(tracer) = &self.tracer {
            ctx.trace = tracer.begin(traceparent, ctx.request_id.as_bytes(), ctx.start);
        }
    }

    /// Runs the policy chain on a located request (noting its site and route in `ctx`);
    /// `Some` if the request is refused.
    pub(super) fn decide(
        &self,
        req: &ReqView<'_>,
        at: &Located<'_, '_>,
        ctx: &mut Ctx,
        snapshot: &Snapshot,
    ) -> Option<Denial> {
        ctx.site = at.site.map(|(i, _)| i);
        ctx.route = at.site.zip(at.route).map(|((s, _), (r, _))| (s, r));
        let client = ctx.client?;
        let facts = Request {
            client: client.ip,
            tls: req.tls,
            sni: ctx.sni.as_deref(),
            host: &at.host,
            method: req.method,
            path_and_query: req.path_and_query,
            path: req.path,
            header_bytes: req.header_bytes,
            content_length: req.content_length,
            site: at.site.map(|(_, s)| &s.policy),
            route: at.route.map(|(_, r)| &r.policy),
            certs: &snapshot.certs,
            client_cert: ctx.client_cert.as_deref(),
            now: ctx.start,
        };
        let denial = snapshot.policy.chain.check(&facts);
        if at.site.is_none_or(|(_, s)| s.policy.client_auth.is_none()) {
            // A certificate verified for another site is not this site's backend's business.
            ctx.client_cert = None;
        }
        if let Some(trace) = &mut ctx.trace {
            trace.decided(denial.as_ref().map(|d| (&*d.rule, d.status)));
        }
        denial
    }

    /// Picks the backend for the next attempt of a proxied request and notes it in
    /// `ctx.tried`; `header` looks a request header up (for header-hashed upstreams).
    pub(super) fn pick_backend<'h>(
        &self,
        action: &ProxyAction,
        ctx: &mut Ctx,
        path: &str,
        header: impl FnOnce(&http::HeaderName) -> Option<&'h [u8]>,
    ) -> Result<SocketAddr> {
        let upstream = &action.upstream;
        let ip_key: [u8; 16];
        let key: &[u8] = match &upstream.hash_key {
            // Round robin and random ignore the key: do not build one.
            _ if !upstream.is_hashed() => &[],
            HashKey::ClientIp => {
                ip_key = match ctx.client.map(|c| c.ip) {
                    Some(std::net::IpAddr::V4(v4)) => v4.to_ipv6_mapped().octets(),
                    Some(std::net::IpAddr::V6(v6)) => v6.octets(),
                    None => [0; 16],
                };
                &ip_key
            }
            HashKey::Path => path.as_bytes(),
            HashKey::Header(name) => header(name).unwrap_or(&[]),
        };
        let Some(addr) = upstream.select(key, &ctx.tried) else {
            return Error::e_explain(
                ErrorType::HTTPStatus(502),
                format!("upstream {:?} has no backend left to try", upstream.name),
            );
        };
        if ctx.active.is_none() {
            ctx.active = Some(upstream.budget.start());
        }
        if !std::mem::take(&mut ctx.retracted) {
            upstream.metrics.attempt();
            if let Some(trace) = &mut ctx.trace {
                trace.attempt(&upstream.name, addr);
            }
        }
        ctx.tried.push(addr);
        ctx.attempt = Some((std::time::Instant::now(), false));
        Ok(addr)
    }

    /// The connection `pooled` holds (taken out of it), else a new one to `addr` for the
    /// request's route: the connection, and whether it came from the pool. One attempt's first
    /// step in both engines.
    pub(super) async fn pooled_or_new(
        &self,
        ctx: &mut Ctx,
        addr: std::net::SocketAddr,
        name: &str,
        pooled: &mut Option<UpstreamConn>,
    ) -> Result<(UpstreamConn, bool), Unconnected> {
        match pooled.take() {
            Some(stream) => Ok((stream, true)),
            None => Ok((self.connect_for_route(ctx, addr, name).await?, false)),
        }
    }

    /// A new connection to `addr` for the request's route (a retry's next backend, or a pooled
    /// connection that turned out stale), by either engine.
    pub(super) async fn connect_for_route(
        &self,
        ctx: &mut Ctx,
        addr: std::net::SocketAddr,
        name: &str,
    ) -> Result<UpstreamConn, Unconnected> {
        let snapshot = ctx.snapshot.clone();
        let action = snapshot.as_deref().zip(ctx.route);
        let Some(action) = action.and_then(|(s, r)| proxy_action(s, r)) else {
            return Err(Unconnected::Fail(Unanswered::answer(502, "no route")));
        };
        self.connect_backend(ctx, action, addr, name).await
    }

    /// A new connection to backend `addr` of `action` (TLS for `name` where the upstream uses
    /// it), or why there is none.
    pub(super) async fn connect_backend(
        &self,
        ctx: &mut Ctx,
        action: &ProxyAction,
        addr: SocketAddr,
        name: &str,
    ) -> std::result::Result<UpstreamConn, Unconnected> {
        let tls = action.upstream.tls().map(|tls| TlsTarget { tls, name });
        // TCP, then TLS: each within the route's connect timeout, both within twice it.
        let connect = super::attempts::limit(action.timeouts.connect, ctx.deadline());
        let total = connect.map(|c| c.saturating_mul(2));
        let started = std::time::Instant::now();
        let e = match upstream_conn::connect(addr, tls, connect, total).await {
            Ok(stream) => {
                let took = started.elapsed();
                ctx.upstream_connect = Some(took);
                action.upstream.metrics.connected(took);
                return Ok(stream);
            }
            Err(e) => e,
        };
        let kind = UpstreamErrorKind::of_connect(&e.error, e.handshake);
        action.upstream.metrics.error(kind);
        if let Some(trace) = &mut ctx.trace {
            trace.failed(kind.label());
        }
        if let Some((_, counted)) = &mut ctx.attempt {
            *counted = true;
        }
        if e.handshake {
            // A certificate that no longer verifies is the operator's to fix: said at warn, as
            // nginx does.
            let upstream = &action.upstream.name;
            tracing::warn!(%upstream, backend = %addr, name, "{e}");
        }
        action.upstream.eject(addr);
        // Nothing reached the backend: any request is safe to send elsewhere.
        let stake = Stake {
            idempotent: false,
            replayable: true,
        };
        if self.retry(ctx, Failure::Connect, stake).await {
            return Err(Unconnected::TryAnother);
        }
        let error = format!("connect to {addr}: {e}");
        Err(Unconnected::Fail(Unanswered::answer(
            io_status(e.error.kind()),
            error,
        )))
    }

    /// Counts and logs a finished request, and ends its trace.
    pub(super) fn finish(
        &self,
        ctx: &mut Ctx,
        facts: &access::Facts<'_>,
        e: Option<&dyn std::fmt::Display>,
    ) {
        let elapsed = ctx.start.elapsed();
        if let (Some(tracer), Some(trace)) = (&self.tracer, ctx.trace.take()) {
            end_trace(tracer, *trace, ctx, facts);
        }
        if let Some(log) = &self.access_log {
            log.log(access::line(facts, ctx, elapsed));
        }
        if let Some(snapshot) = &ctx.snapshot {
            let counters = &snapshot.counters;
            counters.count(ctx.site, ctx.route.map(|(_, r)| r), facts.status);
            let site = counters.site(ctx.site);
            site.record(elapsed, facts.bytes_in, facts.bytes_out);
            if let Some(rule) = &ctx.decision {
                crate::observe::metrics::metrics().deny(Some(site.name()), rule);
            }
            if let Some(cache) = ctx.cache {
                let metrics = crate::observe::cache_metrics::cache_metrics();
                metrics.count(site.name(), cache.as_str(), facts.bytes_out);
            }
        }
        count_upstream_failure(ctx, facts.status);
        if let Some(e) = e {
            tracing::debug!(request_id = %ctx.request_id_str(), error = %e, "request failed");
        }
    }
}

/// Counts the final attempt's failure after it connected (a failed connect is counted when it
/// fails).
fn count_upstream_failure(ctx: &Ctx, status: Option<u16>) {
    if let (Some(kind), Some(action)) = (final_failure(ctx, status), ctx.proxy_action()) {
        action.upstream.metrics.error(kind);
    }
}

/// How the final attempt failed after it connected, as told by the client's `status`: the
/// backend reset or closed the connection, or sent nothing in time.
fn final_failure(ctx: &Ctx, status: Option<u16>) -> Option<UpstreamErrorKind> {
    let kind = match status {
        Some(502) => UpstreamErrorKind::Reset,
        Some(504) => UpstreamErrorKind::Timeout,
        _ => return None,
    };
    matches!((ctx.attempt, ctx.upstream_status), (Some((_, false)), None)).then_some(kind)
}

/// Ends a recorded request's spans with what the access log says of it.
fn end_trace(tracer: &Tracer, trace: RequestTrace, ctx: &Ctx, facts: &access::Facts<'_>) {
    let site = ctx
        .snapshot
        .as_ref()
        .map(|s| s.counters.site(ctx.site).name());
    let ended = Ended {
        method: facts.method,
        route: ctx.route_prefix(),
        site: site.unwrap_or(crate::observe::metrics::NONE),
        status: facts.status,
        request_id: &ctx.request_id_str(),
        client: ctx.client_ip.as_ref().and_then(|ip| ip.to_str().ok()),
        host: facts.host,
        denied_by: ctx.decision.as_deref(),
        upstream_failure: final_failure(ctx, facts.status).map(UpstreamErrorKind::label),
    };
    tracer.end(trace, &ended);
}
