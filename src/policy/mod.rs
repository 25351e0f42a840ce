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
//!  6 ip (site)     site allow / deny (403)
//!  7 takedown      host + path-prefix rules, then the takedown lists' entries (451)
//!  8 rate          per-client-IP limits: global, site, route (429 + Retry-After)
//!  9 body          declared Content-Length over the site's max (413; streamed bodies are
//!                  counted in the proxy's body filter)
//! 10 route         a route matches the path and method (404 no_route)
//! ```
//!
//! Before the chain the proxy resolves the client address (PROXY protocol or trusted
//! X-Forwarded-For, see `client`); the connection limit (`conn_limit`) is counted at accept (in
//! `proxy::conn`) and answered before the chain. Rules only do lookups:
//! no locks, no I/O, no allocation on the pass path.

pub mod client;
mod compile;
pub mod conn_limit;
pub mod icp;
pub mod ip;
pub mod proxy_protocol;
pub mod rate;
mod rules;
mod takedown_list;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::Method;

use crate::tls::CertStore;

pub(crate) use compile::compile;
pub(crate) use compile::{limit_id as rules_limit_id, rate_limit as rules_rate_limit};

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
    /// The site serving the Host (with its index in the router), if any.
    pub site: Option<(usize, &'a crate::route::Site)>,
    /// The route matching path and method, if any.
    pub route: Option<&'a crate::route::router::Route>,
    /// The served certificates, for SNI/Host binding.
    pub certs: &'a CertStore,
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
pub trait Rule: Send + Sync {
    /// The rule's name, for docs and logs.
    fn name(&self) -> &'static str;
    /// `Some` to refuse the request.
    fn check(&self, req: &Request<'_>) -> Option<Denial>;
}

/// The compiled chain, in the documented order.
pub struct Chain {
    rules: Vec<Box<dyn Rule>>,
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

    /// Rule names in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.rules.iter().map(|r| r.name()).collect()
    }
}

/// Everything policy-related the data path needs, compiled once per load.
#[derive(Debug)]
pub struct Policy {
    /// The rules.
    pub chain: Chain,
    /// Peers whose X-Forwarded-For and X-Request-Id are believed.
    pub trusted_proxies: ip::CidrSet,
    /// Concurrent connections per client IP (0: unlimited).
    pub max_connections_per_ip: u32,
    /// Connection counts (shared across reloads).
    pub connections: Arc<conn_limit::ConnCounter>,
    /// Per-site response settings, indexed like the router's sites.
    pub sites: Vec<SitePolicy>,
    /// Timeout of each body read.
    pub body_read_timeout: std::time::Duration,
    /// Timeout of each write to a client.
    pub send_timeout: std::time::Duration,
    /// Timeout of each header read after the first request of a connection.
    pub header_read_timeout: std::time::Duration,
    /// Largest request head the HTTP/1 engine reads.
    pub max_head_bytes: usize,
    /// Keep-alive idle timeout, seconds.
    pub keepalive_timeout_seconds: u64,
    /// Rate state (shared across reloads).
    pub rate_table: Arc<rate::RateTable>,
    /// TLS versions, suites and resumption (the same `Arc` across reloads that leave them alone).
    pub tls: Arc<crate::tls::provider::TlsProtocol>,
    /// The takedown list files, watched for changes like the config.
    pub takedown_files: Vec<std::path::PathBuf>,
}

/// Response-side settings of one site.
#[derive(Debug, Default)]
pub struct SitePolicy {
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
}
