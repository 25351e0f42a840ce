//! The pingora `ProxyHttp` implementation: a thin table of phases over `route/`.
//!
//! Phase order for one request (each reads the snapshot loaded once into the CTX):
//!
//! ```text
//! request_filter          load snapshot -> site by Host (403 if none) -> route by path+method
//!                         (404 if none) -> respond / redirect here, or go on to proxy
//! upstream_peer           pick a backend not tried yet (502 if none) -> peer with timeouts, TLS
//! fail_to_connect         eject that backend for a while; retry on another (nothing was sent)
//! upstream_request_filter rewrite path prefix, Host override, X-Forwarded-* headers
//! logging                 debug line per request
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::header;
use pingora::prelude::*;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::upstreams::peer::HttpPeer;
use pingora_http::{RequestHeader, ResponseHeader};

use crate::route::router::{Canned, ProxyAction, Redirect};
use crate::route::upstream::{HashKey, MAX_TRIES};
use crate::route::Action;
use crate::snapshot::{SharedSnapshot, Snapshot};

/// The proxy application.
pub struct Proxy {
    state: SharedSnapshot,
}

impl Proxy {
    /// A proxy serving whatever snapshot `state` holds.
    pub fn new(state: SharedSnapshot) -> Self {
        Self { state }
    }
}

/// Per-request state.
#[derive(Default)]
pub struct Ctx {
    snapshot: Option<Arc<Snapshot>>,
    /// (site, route) indices into the snapshot's router.
    route: Option<(usize, usize)>,
    /// Backends tried so far, in order.
    tried: Vec<SocketAddr>,
}

impl Ctx {
    fn proxy_action(&self) -> Option<&ProxyAction> {
        let (site, route) = self.route?;
        let snapshot = self.snapshot.as_ref()?;
        let route = snapshot.router.site_at(site)?.routes.get(route)?;
        match &route.action {
            Action::Proxy(p) => Some(p),
            Action::Respond(_) | Action::Redirect(_) => None,
        }
    }

    fn route_prefix(&self) -> &str {
        self.route
            .and_then(|(s, r)| {
                let site = self.snapshot.as_ref()?.router.site_at(s)?;
                site.routes.get(r).map(|r| r.prefix.as_str())
            })
            .unwrap_or("/")
    }
}

/// The Host a request is for: the Host header, or the authority of an HTTP/2 request.
fn request_host(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
}

fn client_ip(session: &Session) -> Option<std::net::IpAddr> {
    match session.client_addr() {
        Some(PingoraAddr::Inet(addr)) => Some(addr.ip()),
        _ => None,
    }
}

async fn send(session: &mut Session, resp: ResponseHeader, body: Bytes) -> Result<bool> {
    session
        .write_response_header(Box::new(resp), body.is_empty())
        .await?;
    if !body.is_empty() {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(true)
}

async fn send_plain(session: &mut Session, status: u16, text: &'static str) -> Result<bool> {
    let mut resp = ResponseHeader::build(status, Some(3))?;
    resp.insert_header(header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(header::CONTENT_LENGTH, text.len())?;
    send(session, resp, Bytes::from_static(text.as_bytes())).await
}

async fn send_canned(session: &mut Session, canned: &Canned) -> Result<bool> {
    let mut resp = ResponseHeader::build(canned.status, Some(canned.headers.len() + 1))?;
    for (name, value) in &canned.headers {
        resp.insert_header(name.clone(), value.clone())?;
    }
    resp.insert_header(header::CONTENT_LENGTH, canned.body.len())?;
    send(session, resp, canned.body.clone()).await
}

async fn send_redirect(session: &mut Session, redirect: &Redirect) -> Result<bool> {
    let location = if redirect.keep_path {
        let pq = session.req_header().uri.path_and_query();
        let tail = pq.map_or("/", |p| p.as_str());
        format!("{}{}", redirect.to.trim_end_matches('/'), tail)
    } else {
        redirect.to.clone()
    };
    let mut resp = ResponseHeader::build(redirect.status, Some(2))?;
    resp.insert_header(header::LOCATION, location)?;
    resp.insert_header(header::CONTENT_LENGTH, 0)?;
    send(session, resp, Bytes::new()).await
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let snapshot = self.state.load_full();
        let req = session.req_header();
        let Some(site_idx) = request_host(req).and_then(|h| snapshot.router.find(h)) else {
            return send_plain(
                session,
                403,
                "403 Forbidden: this host is not served here\n",
            )
            .await;
        };
        let Some(site) = snapshot.router.site_at(site_idx) else {
            return send_plain(session, 500, "500 Internal Server Error\n").await;
        };
        let Some(route_idx) = site.find_route(req.uri.path(), &req.method) else {
            return send_plain(session, 404, "404 Not Found\n").await;
        };
        let handled = match &site.routes[route_idx].action {
            Action::Respond(canned) => Some(canned.clone()),
            Action::Redirect(r) => return send_redirect(session, r).await,
            Action::Proxy(_) => None,
        };
        if let Some(canned) = handled {
            return send_canned(session, &canned).await;
        }
        ctx.route = Some((site_idx, route_idx));
        ctx.snapshot = Some(snapshot);
        Ok(false)
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(action) = ctx.proxy_action() else {
            return Error::e_explain(ErrorType::InternalError, "upstream_peer without a route");
        };
        let upstream = &action.upstream;
        let req = session.req_header();
        let ip_key;
        let key: &[u8] = match &upstream.hash_key {
            HashKey::ClientIp => {
                ip_key = client_ip(session)
                    .map(|ip| ip.to_string())
                    .unwrap_or_default();
                ip_key.as_bytes()
            }
            HashKey::Path => req.uri.path().as_bytes(),
            HashKey::Header(name) => req.headers.get(name).map_or(&[][..], |v| v.as_bytes()),
        };
        let Some(addr) = upstream.select(key, &ctx.tried) else {
            return Error::e_explain(
                ErrorType::HTTPStatus(502),
                format!("upstream {:?} has no backend left to try", upstream.name),
            );
        };
        let sni = action
            .host_header
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .or_else(|| request_host(req).map(crate::route::router::strip_port));
        let peer = upstream.peer(addr, sni);
        ctx.tried.push(addr);
        Ok(peer)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(action) = ctx.proxy_action() {
            let upstream = &action.upstream;
            if let PingoraAddr::Inet(addr) = &peer._address {
                upstream.eject(*addr);
            }
            // Nothing reached the backend, so even a request with a body is safe to send again.
            if ctx.tried.len() < MAX_TRIES.min(upstream.backend_count()) {
                e.set_retry(true);
            }
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let prefix = ctx.route_prefix().to_owned();
        let Some(action) = ctx.proxy_action() else {
            return Ok(());
        };
        let pq = upstream_request.uri.path_and_query().map(|p| p.as_str());
        if let Some(path) = action.rewrite.apply(&prefix, pq.unwrap_or("/")) {
            let uri = path.parse::<http::Uri>().or_err(
                ErrorType::InvalidHTTPHeader,
                "rewritten path is not a valid URI",
            )?;
            upstream_request.set_uri(uri);
        }
        if let Some(host) = &action.host_header {
            upstream_request.insert_header(header::HOST, host.clone())?;
        }
        if let Some(ip) = client_ip(session) {
            let forwarded = match upstream_request.headers.get("x-forwarded-for") {
                Some(prev) => format!("{}, {ip}", String::from_utf8_lossy(prev.as_bytes())),
                None => ip.to_string(),
            };
            upstream_request.insert_header("x-forwarded-for", forwarded)?;
            upstream_request.insert_header("x-real-ip", ip.to_string())?;
        }
        let proto = if session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .is_some()
        {
            "https"
        } else {
            "http"
        };
        upstream_request.insert_header("x-forwarded-proto", proto)?;
        Ok(())
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let req = session.req_header();
        tracing::debug!(
            method = %req.method,
            path = req.uri.path(),
            host = request_host(req).unwrap_or("-"),
            status,
            upstream = ?ctx.tried.last(),
            error = e.map(|e| e.to_string()),
            "request"
        );
    }
}
