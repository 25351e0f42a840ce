//! Host and path routing, compiled at load into hash maps and prefix-sorted route lists.
//!
//! Per request: one or a few hash lookups for the Host (exact, then wildcard parents), then a scan
//! of that site's routes, longest prefix first. Neither depends on how many sites there are.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};

use super::pool::Kind;
use super::retry::{RetryPolicy, RouteTimeouts};
use super::upstream::Upstream;
use crate::policy::headers::HeaderEdits;
use crate::policy::{RoutePolicy, SitePolicy};
use crate::tls::client_auth::ClientAuth;

/// Every site, indexed by host.
#[derive(Debug, Default)]
pub struct Router {
    sites: Vec<Site>,
    exact: HashMap<Box<str>, usize>,
    /// `*.example.cn` is stored as `example.cn` and matches subdomains at any depth.
    wildcard: HashMap<Box<str>, usize>,
    /// The sites' distinct client certificate checks (each needs a rustls configuration).
    client_auths: Vec<Arc<ClientAuth>>,
}

/// A virtual host.
#[derive(Debug, PartialEq)]
pub struct Site {
    /// Name from the config.
    pub name: String,
    /// Hosts as configured.
    pub hosts: Vec<String>,
    /// Routes, longest prefix first.
    pub routes: Vec<Route>,
    /// What the rules and the response edits apply to its requests.
    pub policy: SitePolicy,
}

/// One route of a site.
#[derive(Debug, PartialEq)]
pub struct Route {
    /// Path prefix it matches.
    pub prefix: String,
    /// Methods it matches; `None` is all.
    pub methods: Option<Vec<Method>>,
    /// What it does.
    pub action: Action,
    /// What the rules apply to its requests.
    pub policy: RoutePolicy,
    /// Its header edits (its site's, then its own).
    pub headers: HeaderEdits,
}

/// What a route does with a request.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Forward to an upstream.
    Proxy(ProxyAction),
    /// Answer with a fixed response.
    Respond(Arc<Canned>),
    /// Answer with a redirect.
    Redirect(Redirect),
}

/// Forwarding details.
#[derive(Debug)]
pub struct ProxyAction {
    /// Where to.
    pub upstream: Arc<Upstream>,
    /// How the path changes on the way.
    pub rewrite: Rewrite,
    /// Host header sent upstream instead of the client's.
    pub host_header: Option<HeaderValue>,
    /// How long its exchange with a backend may take.
    pub timeouts: RouteTimeouts,
    /// When a failed attempt is made again.
    pub retries: RetryPolicy,
    /// What the edge cache stores of its responses (`None`: nothing).
    pub cache: Option<Arc<crate::cache::Rules>>,
}

/// Two actions are the same when they go to the upstream of the same name the same way (the
/// upstream's own settings are compared as upstreams).
impl PartialEq for ProxyAction {
    fn eq(&self, other: &Self) -> bool {
        self.upstream.name == other.upstream.name
            && self.rewrite == other.rewrite
            && self.host_header == other.host_header
            && self.timeouts == other.timeouts
            && self.retries == other.retries
            && self.cache == other.cache
    }
}

impl ProxyAction {
    /// The name a TLS connection to a backend is made for (SNI, and the name verified): the
    /// upstream's `sni`, else the Host sent upstream, without its port.
    pub fn tls_name<'a>(&'a self, request_host: &'a str) -> &'a str {
        let configured = self.upstream.tls().and_then(|t| t.sni.as_deref());
        let sent = self.host_header.as_ref().and_then(|h| h.to_str().ok());
        configured.unwrap_or_else(|| strip_port(sent.unwrap_or(request_host)))
    }

    /// Which pooled connections a request for `request_host` may take: plain ones, or TLS ones
    /// of this upstream's group made for its [`Self::tls_name`].
    pub fn connection_kind<'a>(&'a self, request_host: &'a str) -> Kind<'a> {
        match self.upstream.tls() {
            Some(tls) => Kind {
                group: tls.group,
                name: self.tls_name(request_host),
            },
            None => Kind::PLAIN,
        }
    }
}

/// Path rewriting of a proxied request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// Path unchanged.
    Keep,
    /// Matched prefix replaced by this (a plain strip replaces it by `/`).
    ReplacePrefix(String),
}

/// A fixed response, prepared at load.
#[derive(Debug, PartialEq)]
pub struct Canned {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body.
    pub body: Bytes,
}

/// A redirect.
#[derive(Debug, PartialEq)]
pub struct Redirect {
    /// 301, 302, 303, 307 or 308.
    pub status: StatusCode,
    /// Location (prefix, when `keep_path`).
    pub to: String,
    /// Append the request path and query.
    pub keep_path: bool,
}

impl Router {
    /// Builds the index. The caller has checked that no host is claimed twice.
    pub fn new(sites: Vec<Site>) -> Self {
        let mut router = Router::default();
        for (i, site) in sites.iter().enumerate() {
            for host in &site.hosts {
                let host = host.to_ascii_lowercase();
                match host.strip_prefix("*.") {
                    Some(base) => router.wildcard.insert(base.into(), i),
                    None => router.exact.insert(host.into(), i),
                };
            }
            if let Some(auth) = &site.policy.client_auth {
                if !router.client_auths.contains(auth) {
                    router.client_auths.push(auth.clone());
                }
            }
        }
        router.sites = sites;
        router
    }

    /// The site serving `host` (a Host header value: port and case are ignored).
    pub fn site(&self, host: &str) -> Option<&Site> {
        self.find(host).map(|i| &self.sites[i])
    }

    /// The index of the site serving `host`; see [`Router::site_at`].
    pub fn find(&self, host: &str) -> Option<usize> {
        let name = strip_port(host);
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.find_lower(&name.to_ascii_lowercase());
        }
        self.find_lower(name)
    }

    fn find_lower(&self, name: &str) -> Option<usize> {
        let name = name.strip_suffix('.').unwrap_or(name);
        if let Some(&i) = self.exact.get(name) {
            return Some(i);
        }
        let mut rest = name;
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(&i) = self.wildcard.get(parent) {
                return Some(i);
            }
            rest = parent;
        }
        None
    }

    /// The site at an index returned by [`Router::find`].
    pub fn site_at(&self, i: usize) -> Option<&Site> {
        self.sites.get(i)
    }

    /// The sites' distinct client certificate checks.
    pub fn client_auths(&self) -> &[Arc<ClientAuth>] {
        &self.client_auths
    }

    /// Every site, in config order.
    pub fn sites(&self) -> &[Site] {
        &self.sites
    }
}

impl Site {
    /// The route for `path` and `method`: the longest matching prefix that allows the method.
    pub fn route(&self, path: &str, method: &Method) -> Option<&Route> {
        self.find_route(path, method).map(|i| &self.routes[i])
    }

    /// The index of [`Site::route`]'s answer in `routes`.
    pub fn find_route(&self, path: &str, method: &Method) -> Option<usize> {
        self.routes.iter().position(|r| {
            path.starts_with(r.prefix.as_str())
                && r.methods.as_ref().is_none_or(|m| m.contains(method))
        })
    }
}

impl Rewrite {
    /// The upstream path (with query) for a request path that starts with `prefix`.
    /// `None` when the path is unchanged.
    pub fn apply(&self, prefix: &str, path_and_query: &str) -> Option<String> {
        let Rewrite::ReplacePrefix(with) = self else {
            return None;
        };
        let rest = path_and_query.get(prefix.len()..).unwrap_or("");
        let mut out = String::with_capacity(with.len() + rest.len() + 1);
        out.push_str(with);
        match (out.ends_with('/'), rest.starts_with('/')) {
            (true, true) => out.push_str(&rest[1..]),
            (false, false) if !rest.is_empty() && !rest.starts_with('?') => {
                out.push('/');
                out.push_str(rest);
            }
            _ => out.push_str(rest),
        }
        if !out.starts_with('/') {
            out.insert(0, '/');
        }
        Some(out)
    }
}

/// `host` without a trailing `:port` (IPv6 literals keep their brackets).
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(name: &str, hosts: &[&str], prefixes: &[&str]) -> Site {
        let mut routes: Vec<Route> = prefixes
            .iter()
            .map(|p| Route {
                prefix: p.to_string(),
                methods: None,
                action: Action::Redirect(Redirect {
                    status: StatusCode::FOUND,
                    to: p.to_string(),
                    keep_path: false,
                }),
                policy: RoutePolicy::default(),
                headers: HeaderEdits::default(),
            })
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Site {
            name: name.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            routes,
            policy: SitePolicy::default(),
        }
    }

    #[test]
    fn exact_host_beats_wildcard_and_wildcards_match_any_depth() {
        let router = Router::new(vec![
            site("wild", &["*.example.cn"], &["/"]),
            site("shop", &["shop.example.cn"], &["/"]),
        ]);
        let name = |h: &str| router.site(h).map(|s| s.name.clone());
        assert_eq!(name("shop.example.cn").as_deref(), Some("shop"));
        assert_eq!(name("SHOP.example.cn:443").as_deref(), Some("shop"));
        assert_eq!(name("a.example.cn").as_deref(), Some("wild"));
        assert_eq!(name("a.b.example.cn").as_deref(), Some("wild"));
        assert_eq!(name("example.cn"), None);
        assert_eq!(name("other.cn"), None);
    }

    #[test]
    fn longest_prefix_wins() {
        let s = site("s", &["s"], &["/", "/api/", "/api/v2/"]);
        let prefix = |p: &str| s.route(p, &Method::GET).map(|r| r.prefix.clone());
        assert_eq!(prefix("/api/v2/x").as_deref(), Some("/api/v2/"));
        assert_eq!(prefix("/api/v1").as_deref(), Some("/api/"));
        assert_eq!(prefix("/index.html").as_deref(), Some("/"));
    }

    #[test]
    fn rewrite_replaces_prefix_keeping_one_slash() {
        let strip = Rewrite::ReplacePrefix("/".into());
        assert_eq!(
            strip.apply("/origin/", "/origin/a?b=1").as_deref(),
            Some("/a?b=1")
        );
        assert_eq!(strip.apply("/origin/", "/origin/").as_deref(), Some("/"));
        assert_eq!(strip.apply("/origin", "/origin/a").as_deref(), Some("/a"));
        let replace = Rewrite::ReplacePrefix("/v2".into());
        assert_eq!(replace.apply("/api", "/api/x").as_deref(), Some("/v2/x"));
        assert_eq!(Rewrite::Keep.apply("/api", "/api/x"), None);
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("example.cn:8443"), "example.cn");
        assert_eq!(strip_port("example.cn"), "example.cn");
        assert_eq!(strip_port("[::1]:8443"), "[::1]");
    }
}
