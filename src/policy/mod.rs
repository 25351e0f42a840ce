//! Data-path policy: small rules behind one trait, run in one fixed order on state compiled at load.
//!
//! Order (the first rule that denies decides; its id is logged as `deny:<id>`):
//!
//! ```text
//!  1 limits        method allowed (405), URI length (414), header size (431)
//!  2 ip (global)   policy.allow / policy.deny (403)
//!  3 host          Host is a configured site (403 unknown_host)
//!  4 sni_host      on TLS, the Host is covered by the certificate chosen for the SNI (421)
//!  5 https_only    plain HTTP to an https_only site (308 to https)
//!  6 client_cert   a site that checks client certificates: the connection's handshake ran its
//!                  check (421 on TLS; 403 on plain HTTP when required)
//!  7 ip (site)     site allow / deny (403)
//!  8 takedown      host + path-prefix rules, then the takedown lists' entries (451)
//!  9 rate          per-client-IP limits: global, site, route (429 + Retry-After)
//! 10 body          declared Content-Length over the site's max (413; streamed bodies are
//!                  counted in the proxy's body filter)
//! 11 route         a route matches the path and method (404 no_route)
//! ```
//!
//! Before the chain the proxy resolves the client address (PROXY protocol or trusted
//! X-Forwarded-For, see `client`); the connection limit (`conn_limit`) is counted at accept (in
//! `proxy::conn`) and answered before the chain. Rules only do lookups:
//! no locks, no I/O, no allocation on the pass path.

pub mod client;
pub mod conn_limit;
pub mod headers;
pub mod icp;
pub mod ip;
pub mod proxy_protocol;
pub mod rate;
pub(crate) mod rules;
pub(crate) mod takedown_list;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::Method;

use crate::tls::client_auth::{ClientAuth, ClientCertCheck};
use crate::tls::CertStore;

/// What a rule knows about a request.
pub struct Request<'a> {
    /// Resolved client IP (after PROXY protocol / trusted X-Forwarded-For).
    pub client: IpAddr,
    /// Arrived over TLS.
    pub tls: bool,
    /// SNI of the TLS connection.
    pub sni: Option<&'a str>,
    /// Host, lowercase, without port.
    pub host: &'a str,
    /// Method.
    pub method: &'a Method,
    /// Path and query as received.
    pub path_and_query: &'a str,
    /// Path only.
    pub path: &'a str,
    /// Bytes of the request header block.
    pub header_bytes: usize,
    /// Declared body length.
    pub content_length: Option<u64>,
    /// The policy of the site serving the Host, if a site does.
    pub site: Option<&'a SitePolicy>,
    /// The policy of the route matching path and method, if one does.
    pub route: Option<&'a RoutePolicy>,
    /// The served certificates, for SNI/Host binding.
    pub certs: &'a CertStore,
    /// The client certificate check the TLS connection's handshake ran, if any.
    pub client_cert: Option<&'a ClientCertCheck>,
    /// Now, read once per request.
    pub now: Instant,
}

/// A refusal: what to answer and which rule decided.
#[derive(Debug, Clone)]
pub struct Denial {
    /// Response status.
    pub status: u16,
    /// Rule id, logged as `deny:<id>`.
    pub rule: Arc<str>,
    /// Extra header (Retry-After, Location).
    pub header: Option<(http::HeaderName, String)>,
    /// Response body.
    pub body: Bytes,
}

/// A data-path rule.
pub trait Rule: std::any::Any + Send + Sync {
    /// The rule's name, for docs and logs.
    fn name(&self) -> &'static str;
    /// Whether `other` is this rule with the same settings (what a reload's diff compares).
    fn same_as(&self, other: &dyn Rule) -> bool;
    /// `Some` to refuse the request.
    fn check(&self, req: &Request<'_>) -> Option<Denial>;
}

/// The compiled chain, in the documented order.
pub struct Chain {
    pub(crate) rules: Vec<Box<dyn Rule>>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.rules.iter().map(|r| r.name()))
            .finish()
    }
}

impl Chain {
    /// Runs every rule in order; the first denial decides.
    pub fn check(&self, req: &Request<'_>) -> Option<Denial> {
        self.rules.iter().find_map(|r| r.check(req))
    }

    /// Whether a takedown (a rule or a list's entry) covers `host`, `path`
    /// (`path_and_query`): what the edge cache purges after a reload.
    pub fn taken_down(&self, host: &str, path: &str, path_and_query: &str) -> bool {
        self.rules.iter().any(|r| {
            let any = r.as_ref() as &dyn std::any::Any;
            any.downcast_ref::<rules::Takedowns>()
                .is_some_and(|t| t.find(host, path, path_and_query).is_some())
        })
    }

    /// Rule names in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.rules.iter().map(|r| r.name()).collect()
    }

    /// The rules of `self` whose settings differ in `other`, by name: a rule only one chain
    /// has counts too.
    pub fn changed(&self, other: &Chain) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = self
            .rules
            .iter()
            .filter(|r| {
                !other
                    .rules
                    .iter()
                    .any(|o| o.name() == r.name() && r.same_as(o.as_ref()))
            })
            .map(|r| r.name())
            .collect();
        for o in &other.rules {
            if !self.rules.iter().any(|r| r.name() == o.name()) {
                out.push(o.name());
            }
        }
        out
    }
}

/// Everything policy-related the data path needs, compiled once per load.
#[derive(Debug)]
pub struct Policy {
    /// The rules.
    pub chain: Chain,
    /// Peers whose X-Forwarded-For and X-Request-Id are believed.
    pub trusted_proxies: ip::CidrSet,
    /// Concurrent connections per client IP; `None`: unlimited.
    pub max_connections_per_ip: Option<std::num::NonZeroU32>,
    /// Connection counts (shared across reloads).
    pub connections: Arc<conn_limit::ConnCounter>,
    /// Timeout of each body read.
    pub body_read_timeout: std::time::Duration,
    /// Timeout of each write to a client.
    pub send_timeout: std::time::Duration,
    /// Timeout of each header read after the first request of a connection.
    pub header_read_timeout: std::time::Duration,
    /// Largest request head the HTTP/1 engine reads.
    pub max_head_bytes: usize,
    /// How long an idle keep-alive connection waits for its next request; `None`: no limit.
    pub keepalive_timeout: Option<std::time::Duration>,
    /// Rate state (shared across reloads).
    pub rate_table: Arc<rate::RateTable>,
    /// TLS versions, suites and resumption (the same `Arc` across reloads that leave them alone).
    pub tls: Arc<crate::tls::provider::TlsProtocol>,
    /// The takedown list files, watched for changes like the config.
    pub takedown_files: Vec<std::path::PathBuf>,
}

impl Policy {
    /// What differs in `other`: the chain's rules by name, then the connection settings.
    pub fn changed(&self, other: &Policy) -> Vec<&'static str> {
        let timeouts = |p: &Policy| {
            (
                p.header_read_timeout,
                p.body_read_timeout,
                p.send_timeout,
                p.keepalive_timeout,
            )
        };
        let mut out = self.chain.changed(&other.chain);
        let settings = [
            (
                "trusted_proxies",
                self.trusted_proxies != other.trusted_proxies,
            ),
            (
                "max_connections_per_ip",
                self.max_connections_per_ip != other.max_connections_per_ip,
            ),
            ("timeouts", timeouts(self) != timeouts(other)),
            (
                "max_head_bytes",
                self.max_head_bytes != other.max_head_bytes,
            ),
            ("tls", self.tls.source != other.tls.source),
        ];
        out.extend(settings.into_iter().filter(|(_, c)| *c).map(|(n, _)| n));
        out
    }
}

/// What the rules and the response edits know of one site (it lives in the site,
/// `route::Site::policy`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SitePolicy {
    /// Answer plain HTTP with a redirect to https.
    pub https_only: bool,
    /// Client networks admitted and refused.
    pub ip: ip::IpLists,
    /// Per-client-IP rate limit.
    pub rate: Option<rate::RateLimit>,
    /// Largest body.
    pub max_body_bytes: u64,
    /// Log the query string.
    pub log_query: bool,
    /// `Strict-Transport-Security` value for TLS responses.
    pub hsts: Option<http::HeaderValue>,
    /// Response headers removed.
    pub remove_headers: Vec<http::HeaderName>,
    /// Response headers added.
    pub add_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// `Server` sent in place of the backend's (none: no `Server`).
    pub server: Option<http::HeaderValue>,
    /// `Alt-Svc` sent (a backend's never is).
    pub alt_svc: Option<http::HeaderValue>,
    /// Compression of responses the backend did not compress.
    pub compression: Option<crate::semantics::coding::Compression>,
    /// Client certificates (mutual TLS) asked for or required.
    pub client_auth: Option<Arc<ClientAuth>>,
    /// Pages in place of menshen's plain text for its own error answers, by status.
    pub error_pages: crate::semantics::error_pages::ErrorPages,
}

/// What the rules know of one route (it lives in the route, `route::router::Route::policy`).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct RoutePolicy {
    /// Per-client-IP rate limit.
    pub rate: Option<rate::RateLimit>,
}
