//! The pingora `ProxyHttp` implementation: a thin table of phases over `policy/` and `route/`,
//! for the requests menshen's own HTTP/1 loop (`h1`) does not take. Both call the phases in
//! `phases`; per-request state is `ctx`'s.
//!
//! Phase order for one request (each reads the snapshot loaded once into the CTX):
//!
//! ```text
//! request_filter          load snapshot -> client address (PROXY header / trusted XFF)
//!                         -> over the per-IP connection limit? (counted at accept, conn.rs)
//!                         -> site by Host, route by path+method
//!                         -> policy chain (see policy/mod.rs; first denial answers)
//!                         -> respond / redirect here, or go on to proxy
//! request_body_filter     count body bytes against the site's limit (413)
//! upstream_peer           pick a backend not tried yet (502 if none) -> peer with timeouts, TLS
//! fail_to_connect         eject that backend for a while; retry on another (nothing was sent)
//! fail_to_proxy           one map from error to status (errors.rs): 502/504 upstream, 400/408
//! upstream_request_filter rewrite path prefix, Host override, X-Forwarded-*, X-Request-Id
//! upstream_response_filter note the upstream status; drop fields its Connection header names
//! response_filter         site response headers (remove / add, HSTS), X-Request-Id
//! logging                 one access log line, handed to the writer thread
//! ```

mod access;
pub mod conn;
mod ctx;
mod errors;
mod h1;
mod h2;
pub mod in_flight;
mod own;
mod phases;
mod respond;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::header;
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::upstreams::peer::HttpPeer;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::FailToProxy;

use self::conn::ClientConn;
use self::ctx::{Ctx, RequestIds};
use self::phases::{forwarded_for, proxy_action, Located, Peer, ReqView, ResponseEdits};
use crate::observe::access_log::AccessLog;
use crate::policy::Denial;
use crate::route::router::strip_port;
use crate::route::Action;
use crate::semantics::fields::{field, is_hop_by_hop, nominated, Field};
use crate::semantics::target::{canonical, TargetError};
use crate::snapshot::SharedSnapshot;
use crate::tls::resolver::ConnInfo;

/// The proxy application, shared by pingora-proxy's phases and menshen's own HTTP/1 loop
/// (`h1`). Clones share the request-id counter.
#[derive(Clone)]
pub struct Proxy {
    state: SharedSnapshot,
    access_log: Option<Arc<AccessLog>>,
    request_ids: Arc<RequestIds>,
}

impl Proxy {
    /// A proxy serving whatever snapshot `state` holds, logging to `access_log`.
    pub fn new(state: SharedSnapshot, access_log: Option<Arc<AccessLog>>) -> Self {
        Self {
            state,
            access_log,
            request_ids: Arc::new(RequestIds::new()),
        }
    }
}

/// `crate::fuzz`'s way into the HTTP/1 engine's head reading.
#[doc(hidden)]
pub fn fuzz_request_head(data: &[u8]) -> Option<String> {
    h1::read_one_head(data)
}

/// `crate::fuzz`'s way into the chunked decoder.
#[doc(hidden)]
pub fn fuzz_chunked(data: &[u8]) {
    h1::fuzz_chunked(data)
}

/// `crate::fuzz`'s way into the HTTP/2-to-HTTP/1 mapping.
#[doc(hidden)]
pub fn fuzz_h2_request(data: &[u8]) {
    h2::fuzz_request(data)
}

/// The Host a request is for: the Host header, or the authority of an HTTP/2 request.
pub(crate) fn request_host(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
}

fn header_bytes(req: &RequestHeader) -> usize {
    req.headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum()
}

fn peer_addr(session: &Session) -> SocketAddr {
    match session.client_addr() {
        Some(PingoraAddr::Inet(addr)) => *addr,
        _ => SocketAddr::from(([0, 0, 0, 0], 0)),
    }
}

fn is_tls(session: &Session) -> bool {
    session
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .is_some()
}

impl<'a> ReqView<'a> {
    fn of(req: &'a RequestHeader, tls: bool) -> Self {
        Self {
            host: request_host(req),
            method: &req.method,
            path: req.uri.path(),
            path_and_query: req.uri.path_and_query().map_or("/", |p| p.as_str()),
            header_bytes: header_bytes(req),
            content_length: req
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok()),
            tls,
        }
    }
}

/// Brings the request's target and Host to their canonical form (`semantics::target`) in place,
/// so that every phase and the backend see the same request; an HTTP/2 `:authority` or an
/// absolute-form authority wins over the Host field.
fn canonicalize(req: &mut RequestHeader) -> std::result::Result<(), TargetError> {
    let (uri, host) = {
        let authority = req.uri.authority().map(|a| a.as_str());
        let host_field = req.headers.get(header::HOST);
        let host = match (authority, host_field.map(|h| h.to_str())) {
            (Some(a), _) => a,
            (None, Some(Ok(h))) => h,
            (None, Some(Err(_)) | None) => return Err(TargetError::Host),
        };
        let pq = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let (target, host) = canonical(pq, Some(host))?;
        let uri =
            (authority.is_some() || target.as_str() != pq).then(|| target.as_str().to_owned());
        let host = (host_field.map(|h| h.as_bytes()) != Some(host.as_str().as_bytes()))
            .then(|| host.as_str().to_owned());
        (uri, host)
    };
    if let Some(uri) = uri {
        req.set_uri(uri.parse::<http::Uri>().map_err(|_| TargetError::Form)?);
    }
    if let Some(host) = host {
        req.insert_header(header::HOST, host)
            .map_err(|_| TargetError::Host)?;
    }
    Ok(())
}

/// Drops the fields of the backend's connection (`semantics::fields`): the hop-by-hop ones and
/// those its `Connection` names; the framing stays, and so does an upgrade handshake's
/// `Upgrade` and `Connection` (pingora-proxy carries the upgrade itself).
fn drop_hop_by_hop(resp: &mut ResponseHeader) {
    let upgrade = resp.status == http::StatusCode::SWITCHING_PROTOCOLS;
    let connection: Vec<&[u8]> = resp
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let doomed: Vec<http::HeaderName> = resp
        .headers
        .keys()
        .filter(|name| {
            let f = field(name.as_str());
            let kept = upgrade && matches!(f, Field::Upgrade | Field::Connection);
            !kept && (is_hop_by_hop(f) || nominated(connection.iter().copied(), name.as_str()))
        })
        .cloned()
        .collect();
    for name in doomed {
        resp.remove_header(&name);
    }
}

/// The answer to a request on a connection that arrived over `max_connections_per_ip`.
pub(super) fn over_connection_limit() -> Denial {
    Denial {
        status: 429,
        rule: Arc::from("max_connections_per_ip"),
        header: Some((header::RETRY_AFTER, "1".into())),
        body: Bytes::from_static(b"429 Too Many Requests: too many connections\n"),
    }
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    /// None: pingora's default adds a response compression module, switched off, which still
    /// costs every request a module context and its filter calls.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    fn new_ctx(&self) -> Ctx {
        Ctx::new()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let over_limit = match session.stream().and_then(ClientConn::of) {
            Some(conn) => {
                conn.header_done();
                conn.over_limit()
            }
            None => false,
        };
        let snapshot = self.state.load_full();
        let policy = &snapshot.policy;
        let req = session.req_header();
        let peer = Peer {
            addr: peer_addr(session),
            ip_text: None,
            sni: session
                .digest()
                .and_then(|d| d.ssl_digest.as_ref())
                .and_then(|t| t.extension.get::<ConnInfo>())
                .and_then(|info| info.sni.clone()),
        };
        self.identify(
            ctx,
            policy,
            &peer,
            req.headers.get("x-forwarded-for").map(|v| v.as_bytes()),
            req.headers.get("x-request-id").map(|v| v.as_bytes()),
        );
        // Whether the connection stays open is the client's call, made when pingora read the
        // request (HTTP/1.0 closes unless it asked for keep-alive); the idle timeout is ours.
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(policy.keepalive_timeout_seconds));
        }
        session.set_read_timeout(Some(policy.body_read_timeout));
        session.set_write_timeout(Some(policy.send_timeout));

        let canonical = canonicalize(session.req_header_mut());
        let denial = if let Err(e) = canonical {
            session.set_keepalive(None);
            Some(Denial {
                status: 400,
                rule: Arc::from("bad_request"),
                header: None,
                body: Bytes::from(format!("400 Bad Request: {e}\n")),
            })
        } else if over_limit {
            // This connection is not counted: close it after the answer.
            session.set_keepalive(None);
            Some(over_connection_limit())
        } else {
            let req = ReqView::of(session.req_header(), is_tls(session));
            let at = Located::find(&req, &snapshot);
            self.decide(&req, &at, ctx, &snapshot)
        };
        if let Some(denial) = denial {
            ctx.decision = Some(denial.rule.clone());
            ctx.snapshot = Some(snapshot);
            return respond::denial(session, &denial, &ctx.request_id).await;
        }
        let action = ctx
            .route
            .and_then(|(s, r)| snapshot.router.site_at(s)?.routes.get(r))
            .map(|r| &r.action);
        let done = match action {
            Some(Action::Respond(canned)) => {
                let canned = canned.clone();
                Some(respond::canned(session, &canned, &ctx.request_id).await)
            }
            Some(Action::Redirect(r)) => Some(respond::redirect(session, r, &ctx.request_id).await),
            Some(Action::Proxy(_)) | None => None,
        };
        ctx.snapshot = Some(snapshot);
        done.unwrap_or(Ok(false))
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let Some(chunk) = body else { return Ok(()) };
        ctx.body_seen += chunk.len() as u64;
        let max = ctx
            .site
            .and_then(|i| ctx.snapshot.as_ref()?.policy.sites.get(i))
            .map_or(u64::MAX, |s| s.max_body_bytes);
        if ctx.body_seen > max {
            ctx.decision = Some(Arc::from("body_too_large"));
            return Error::e_explain(
                ErrorType::HTTPStatus(413),
                "request body over the site's limit",
            );
        }
        Ok(())
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let snapshot = ctx.snapshot.clone();
        let action = snapshot
            .as_deref()
            .zip(ctx.route)
            .and_then(|(s, r)| proxy_action(s, r));
        let Some(action) = action else {
            return Error::e_explain(ErrorType::InternalError, "upstream_peer without a route");
        };
        let req = session.req_header();
        let addr = self.pick_backend(action, ctx, req.uri.path(), |name| {
            req.headers.get(name).map(|v| v.as_bytes())
        })?;
        let sni = action
            .host_header
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .or_else(|| request_host(req).map(strip_port));
        Ok(action.upstream.peer(addr, sni))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let PingoraAddr::Inet(addr) = &peer._address {
            if self.connect_failed(ctx, *addr) {
                e.set_retry(true);
            }
        }
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = errors::status_for(e);
        // A response already begun is left unfinished (HTTP/2: the stream is reset), never
        // completed or appended to: the client must see that it broke off.
        if code > 0 && session.response_written().is_none() {
            if let Err(write) = respond::error(session, code, &ctx.request_id).await {
                tracing::debug!(request_id = %ctx.request_id_str(), "cannot send the error response: {write}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let prefix = ctx.route_prefix();
        let Some(action) = ctx.proxy_action() else {
            return Ok(());
        };
        let pq = upstream_request.uri.path_and_query().map(|p| p.as_str());
        if let Some(path) = action.rewrite.apply(prefix, pq.unwrap_or("/")) {
            let uri = path.parse::<http::Uri>().or_err(
                ErrorType::InvalidHTTPHeader,
                "rewritten path is not a valid URI",
            )?;
            upstream_request.set_uri(uri);
        }
        if let Some(host) = request_host(session.req_header()) {
            upstream_request.insert_header("x-forwarded-host", host.to_owned())?;
        }
        if let Some(host) = &action.host_header {
            upstream_request.insert_header(header::HOST, host.clone())?;
        }
        if let Some(client_ip) = &ctx.client_ip {
            let prev = upstream_request.headers.get("x-forwarded-for");
            let list = forwarded_for(
                prev.map(|v| v.as_bytes()),
                peer_addr(session).ip(),
                client_ip,
            );
            upstream_request.insert_header("x-forwarded-for", list)?;
            upstream_request.insert_header("x-real-ip", client_ip.clone())?;
        }
        let proto = if is_tls(session) {
            http::HeaderValue::from_static("https")
        } else {
            http::HeaderValue::from_static("http")
        };
        upstream_request.insert_header("x-forwarded-proto", proto)?;
        upstream_request.insert_header("x-request-id", ctx.request_id.clone())?;
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.upstream_status = Some(upstream_response.status.as_u16());
        drop_hop_by_hop(upstream_response);
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let edits = ResponseEdits::of(ctx, is_tls(session));
        for name in edits.remove {
            response.remove_header(name);
        }
        for (name, value) in edits.add {
            response.insert_header(name.clone(), value.clone())?;
        }
        if let Some(hsts) = edits.hsts {
            response.insert_header(header::STRICT_TRANSPORT_SECURITY, hsts.clone())?;
        }
        response.insert_header("x-request-id", ctx.request_id.clone())?;
        Ok(())
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        // The next request's header is due header_read_timeout_ms after its first byte.
        if let Some(conn) = session.stream().and_then(ClientConn::of) {
            conn.request_done();
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let facts = access::Facts::of(session, status);
        self.finish(ctx, &facts, e.map(|e| e as &dyn std::fmt::Display));
    }
}
