//! The pingora `ProxyHttp` implementation: a thin table of phases over `policy/` and `route/`.
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
//! upstream_response_filter note the upstream status
//! response_filter         site response headers (remove / add, HSTS), X-Request-Id
//! logging                 one access log line, handed to the writer thread
//! ```

mod access;
pub mod conn;
mod errors;
mod h1;
mod respond;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::{header, HeaderValue};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::upstreams::peer::HttpPeer;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::FailToProxy;

use self::conn::ClientConn;
use crate::observe::access_log::AccessLog;
use crate::policy::client::{self, Client};
use crate::policy::ip::canonical;
use crate::policy::{Denial, Request};
use crate::route::router::{strip_port, ProxyAction};
use crate::route::upstream::{HashKey, MAX_TRIES};
use crate::route::Action;
use crate::snapshot::{SharedSnapshot, Snapshot};
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

/// Unique request ids: a random per-process prefix and a counter.
struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let mut seed = [0u8; 8];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed);
        Self {
            prefix: u64::from_le_bytes(seed),
            next: AtomicU64::new(1),
        }
    }

    /// The next id as a header value: 32 hex digits, made once and shared by the upstream
    /// request, the response and the access log.
    fn next(&self) -> HeaderValue {
        let mut id = [0u8; 32];
        hex16(&mut id[..16], self.prefix);
        hex16(&mut id[16..], self.next.fetch_add(1, Ordering::Relaxed));
        HeaderValue::from_bytes(&id).expect("hex digits are a valid header value")
    }
}

/// Writes `n` as 16 lowercase hex digits.
fn hex16(out: &mut [u8], n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in out.iter_mut().take(16).enumerate() {
        *b = DIGITS[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
}

/// Per-request state.
pub struct Ctx {
    snapshot: Option<Arc<Snapshot>>,
    start: Instant,
    client: Option<Client>,
    sni: Option<Arc<str>>,
    /// Site index in the router.
    site: Option<usize>,
    /// (site, route) indices into the snapshot's router.
    route: Option<(usize, usize)>,
    /// Backends tried so far, in order.
    tried: Tried,
    upstream_status: Option<u16>,
    /// `None`: allowed; `Some(rule)`: denied by that rule.
    decision: Option<Arc<str>>,
    request_id: HeaderValue,
    /// The client IP as text, for X-Forwarded-For, X-Real-IP and the access log.
    client_ip: Option<HeaderValue>,
    body_seen: u64,
}

/// Backends tried for one request, in order, without allocating: at most `MAX_TRIES`, and a try
/// beyond that replaces the last one (so `last()` is always the backend of the final attempt).
struct Tried {
    addrs: [SocketAddr; MAX_TRIES],
    len: usize,
}

impl Default for Tried {
    fn default() -> Self {
        Self {
            addrs: [SocketAddr::from(([0, 0, 0, 0], 0)); MAX_TRIES],
            len: 0,
        }
    }
}

impl Tried {
    fn push(&mut self, addr: SocketAddr) {
        let i = self.len.min(MAX_TRIES - 1);
        self.addrs[i] = addr;
        self.len = i + 1;
    }
}

impl std::ops::Deref for Tried {
    type Target = [SocketAddr];
    fn deref(&self) -> &[SocketAddr] {
        &self.addrs[..self.len]
    }
}

impl Ctx {
    /// A request's state, its clock started.
    fn new() -> Self {
        Ctx {
            snapshot: None,
            start: Instant::now(),
            client: None,
            sni: None,
            site: None,
            route: None,
            tried: Tried::default(),
            upstream_status: None,
            decision: None,
            request_id: HeaderValue::from_static(""),
            client_ip: None,
            body_seen: 0,
        }
    }

    /// The request id as text (a trusted proxy's id may hold bytes that are not UTF-8).
    fn request_id_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.request_id.as_bytes())
    }

    fn proxy_action(&self) -> Option<&ProxyAction> {
        proxy_action(self.snapshot.as_ref()?, self.route?)
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

/// The upstream route `(site, route)` of `snapshot` proxies to, if it proxies.
fn proxy_action(snapshot: &Snapshot, (site, route): (usize, usize)) -> Option<&ProxyAction> {
    match &snapshot.router.site_at(site)?.routes.get(route)?.action {
        Action::Proxy(p) => Some(p),
        Action::Respond(_) | Action::Redirect(_) => None,
    }
}

/// The Host a request is for: the Host header, or the authority of an HTTP/2 request.
pub(crate) fn request_host(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
}

fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
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

/// What the policy and the proxy read of a request header, whichever parser read it
/// (pingora-proxy's or the HTTP/1 loop's).
pub(crate) struct ReqView<'a> {
    /// The Host header (or an HTTP/2 authority) as received.
    host: Option<&'a str>,
    method: &'a http::Method,
    path: &'a str,
    path_and_query: &'a str,
    header_bytes: usize,
    content_length: Option<u64>,
    tls: bool,
}

/// The client end of a connection, as every request on it sees it.
pub(crate) struct Peer {
    /// The socket peer, or the PROXY protocol address.
    addr: SocketAddr,
    /// `addr`'s IP as header text, when formatted once for the connection.
    ip_text: Option<HeaderValue>,
    /// The TLS connection's SNI.
    sni: Option<Arc<str>>,
}

/// The site and route a request is for: lookups only, no side effect.
pub(crate) struct Located<'r, 's> {
    /// Host, lowercase, without port.
    host: Cow<'r, str>,
    site: Option<(usize, &'s crate::route::Site)>,
    route: Option<(usize, &'s crate::route::router::Route)>,
}

impl<'r, 's> Located<'r, 's> {
    fn find(req: &ReqView<'r>, snapshot: &'s Snapshot) -> Self {
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

impl Proxy {
    /// Who is asking: the client address (PROXY header / trusted X-Forwarded-For), the request
    /// id (a trusted proxy's, or a new one) and the TLS connection's SNI, into `ctx`.
    fn identify(
        &self,
        ctx: &mut Ctx,
        policy: &crate::policy::Policy,
        peer: &Peer,
        forwarded_for: Option<&[u8]>,
        request_id: Option<&[u8]>,
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
    }

    /// Runs the policy chain on a located request (noting its site and route in `ctx`);
    /// `Some` if the request is refused.
    fn decide(
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
            site: at.site,
            route: at.route.map(|(_, r)| r),
            certs: &snapshot.certs,
            now: ctx.start,
        };
        snapshot.policy.chain.check(&facts)
    }

    /// Picks the backend for the next attempt of a proxied request and notes it in
    /// `ctx.tried`; `header` looks a request header up (for header-hashed upstreams).
    fn pick_backend<'h>(
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
        ctx.tried.push(addr);
        Ok(addr)
    }

    /// After a failed connect to `addr`: ejects it for a while; `true` if another backend
    /// may be tried (nothing reached this one, so even a request with a body is safe to send).
    fn connect_failed(&self, ctx: &Ctx, addr: SocketAddr) -> bool {
        let Some(action) = ctx.proxy_action() else {
            return false;
        };
        action.upstream.eject(addr);
        ctx.tried.len() < MAX_TRIES.min(action.upstream.backend_count())
    }

    /// Counts and logs a finished request.
    fn finish(&self, ctx: &Ctx, facts: &access::Facts<'_>, e: Option<&dyn std::fmt::Display>) {
        if let Some(log) = &self.access_log {
            log.log(access::line(facts, ctx));
        }
        let m = crate::observe::metrics::metrics();
        m.duration.observe(ctx.start.elapsed().as_secs_f64());
        if let Some(snapshot) = &ctx.snapshot {
            snapshot
                .counters
                .count(ctx.site, ctx.route.map(|(_, r)| r), facts.status);
        }
        if let Some(rule) = &ctx.decision {
            m.denials.with_label_values(&[rule]).inc();
        }
        if let Some(e) = e {
            tracing::debug!(request_id = %ctx.request_id_str(), error = %e, "request failed");
        }
    }
}

/// The X-Forwarded-For sent upstream: the client's address, or, when the request already
/// carried a list (believed or not), that list with the socket peer added.
fn forwarded_for(
    prev: Option<&[u8]>,
    peer: std::net::IpAddr,
    client_ip: &HeaderValue,
) -> HeaderValue {
    match prev {
        Some(prev) => {
            let list = format!("{}, {peer}", String::from_utf8_lossy(prev));
            HeaderValue::from_str(&list).unwrap_or_else(|_| client_ip.clone())
        }
        None => client_ip.clone(),
    }
}

/// What the site does to every response it sends: headers removed, headers set, HSTS on TLS.
struct ResponseEdits<'a> {
    remove: &'a [http::HeaderName],
    add: &'a [(http::HeaderName, HeaderValue)],
    hsts: Option<&'a HeaderValue>,
}

impl<'a> ResponseEdits<'a> {
    fn of(ctx: &'a Ctx, tls: bool) -> Self {
        let site = ctx
            .site
            .and_then(|i| ctx.snapshot.as_ref()?.policy.sites.get(i));
        match site {
            Some(site) => Self {
                remove: &site.remove_headers,
                add: &site.add_headers,
                hsts: site.hsts.as_ref().filter(|_| tls),
            },
            None => Self {
                remove: &[],
                add: &[],
                hsts: None,
            },
        }
    }
}

/// The answer to a request on a connection that arrived over `max_connections_per_ip`.
fn over_connection_limit() -> Denial {
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

        let denial = if over_limit {
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
        if code > 0 {
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
        // Fields the backend's Connection header names belong to its connection (the HTTP/1
        // loop drops them too); the body's framing stays.
        let nominated: Vec<String> = upstream_response
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .filter_map(|t| std::str::from_utf8(t.trim_ascii()).ok())
            .filter(|t| {
                !t.is_empty()
                    && !t.eq_ignore_ascii_case("close")
                    && !t.eq_ignore_ascii_case("keep-alive")
                    && !t.eq_ignore_ascii_case("content-length")
                    && !t.eq_ignore_ascii_case("transfer-encoding")
            })
            .map(str::to_ascii_lowercase)
            .collect();
        for name in nominated {
            upstream_response.remove_header(&name);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Hop-by-hop fields of the backend's connection, which pingora-proxy passes on (the
        // HTTP/1 loop drops them too): the client's keep-alive is menshen's.
        for name in ["keep-alive", "proxy-authenticate", "proxy-connection", "te"] {
            response.remove_header(name);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_32_hex_digits_sharing_the_process_prefix() {
        let ids = RequestIds::new();
        let a = ids.next();
        let b = ids.next();
        for id in [&a, &b] {
            assert_eq!(id.len(), 32);
            assert!(id
                .as_bytes()
                .iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c)));
        }
        assert_eq!(a.as_bytes()[..16], b.as_bytes()[..16]);
        assert_ne!(a, b);
        assert_eq!(&a.as_bytes()[16..], b"0000000000000001");
        assert_eq!(&b.as_bytes()[16..], b"0000000000000002");
    }

    #[test]
    fn tried_keeps_the_final_attempt_last() {
        let addr = |p| SocketAddr::from(([127, 0, 0, 1], p));
        let mut tried = Tried::default();
        assert!(tried.is_empty());
        for p in 1..=MAX_TRIES as u16 + 2 {
            tried.push(addr(p));
        }
        assert_eq!(tried.len(), MAX_TRIES);
        assert_eq!(tried[0], addr(1));
        assert_eq!(tried.last(), Some(&addr(MAX_TRIES as u16 + 2)));
    }
}
