//! The rules of the chain: each checks one concern of a request and denies it or lets it
//! pass. `config/policy.rs` builds them from the config.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::Method;

use super::ip::IpLists;
use super::rate::{RateLimit, RateTable};
use crate::tls::client_auth::ClientCertMode;

/// Whether `other` is the same rule as `rule`, with the same settings (a reload's diff).
fn same<R: Rule + PartialEq + 'static>(rule: &R, other: &dyn Rule) -> bool {
    (other as &dyn std::any::Any).downcast_ref::<R>() == Some(rule)
}
use super::{Denial, Request, Rule};

fn deny(status: u16, rule: &Arc<str>, body: &Bytes) -> Option<Denial> {
    Some(Denial {
        status,
        rule: rule.clone(),
        header: None,
        body: body.clone(),
    })
}

pub(crate) fn text(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

/// Ids and bodies prepared once, so a denial allocates nothing but its `Arc` bump.
pub(crate) fn id(s: &str) -> Arc<str> {
    Arc::from(s)
}

#[derive(PartialEq)]
pub(crate) struct Limits {
    pub(crate) methods: Vec<Method>,
    pub(crate) max_uri: usize,
    pub(crate) max_header: usize,
    pub(crate) ids: [Arc<str>; 3],
    pub(crate) bodies: [Bytes; 3],
}

impl Rule for Limits {
    fn same_as(&self, other: &dyn Rule) -> bool {
        same(self, other)
    }
    fn name(&self) -> &'static str {
        "limits"
    }
    fn check(&self, req: &Request<'_>) -> Option<Denial> {
        if !self.methods.contains(req.method) {
            return deny(405, &self.ids[0], &self.bodies[0]);
        }
        if req.path_and_query.len() > self.max_uri {
            return deny(414, &self.ids[1], &self.bodies[1]);
        }
        if req.header_bytes > self.max_header {
            return deny(431, &self.ids[2], &self.bodies[2]);
        }
        None
    }
}

#[derive(PartialEq)]
pub(crate) struct GlobalIp {
    pub(crate) lists: IpLists,
    pub(crate) deny_id: Arc<str>,
    pub(crate) allow_id: Arc<str>,
}

impl Rule for GlobalIp {
    fn same_as(&self, other: &dyn Rule) -> bool {
        same(self, other)
    }
    fn name(&self) -> &'static str {
        "ip (global)"
    }
    fn check(&self, req: &Request<'_>) -> Option<Denial> {
        let rule = match self.lists.refuses(req.client)? {
            "ip_deny" => &self.deny_id,
            _ => &self.allow_id,
        };
        deny(403, rule, &text("403 Forbidden\n"))
    }
}

#[derive(PartialEq)]
pub(crate) struct UnknownHost(pub(crate) Arc<str>);

impl Rule for UnknownHost {
    fn same_as(&self, other: &dyn Rule) -> bool {
        same(self, other)
    }
    fn name(&self) -> &'static str {
        "host"
    }
    fn check(&self, req: &Request<'_>) -> Option<Denial> {
        match req.site {
            Some(_) => None,
            None => deny(
                403,
                &self.0,
                &text("403 Forbidden: this host is not served here\n"),
            ),
        }
    }
}

#[derive(PartialEq)]
pub(crate) struct SniHost(pub(crate) Arc<str>);

impl Rule for SniHost {
    fn same_as(&self, other: &dyn Rule) -> bool {
        same(self, other)
    }
    fn name(&self) -> &'static str {
        "sni_host"
    }
    fn check(&self, req: &Request<'_>) -> Option<Denial> {
        if !req.tls {
            return None;
        }
        let covered = req
            .certs
            .select(req.sni)
            .is_some_and(|cert| cert.covers(req.host));
        if covered {
            return None;
        }
        deny(
            421,
            &self.0,
            &text(
                "421 Misdirected Request: this connection's certificate does not cover that host\n",
            ),
        )
    }
}

#[derive(PartialEq)]
pub(crate) struct HttpsOnly {
    /// `:port` to put in the Location when the TLS listener is not on 443.
    pub(crate) port_suffix: String,
    pub(crate) id: Arc<str>,
}

impl Rule for HttpsOnly {
    fn same_as(&self, other: &dyn Rule) -> bool {
        same(self, other)
    }
    fn name(&self) -> &'static str {
        "https_only"
    }
    fn check(&self, req: &Request<'_>) -> Option<Denial> {
        if req.tls || !req.site?.https_only {
            return None;
        }
        let location = format!(
            "https://{}{}{}",
            req.host, self.port_suffix, req.path_and_query
        );
        Some(Denial {
            status: 308,
            rule: self.id.clone(),
            header: Some((http::header::LOCATION, location)),
            body: Bytes::new(),
        })
    }
}

/// A site that checks client certificates serves only connections whose handshake ran its
/// check: a connection made for another name (one certificate can cover both) is sent to make a
/// new one (421), and plain HTTP gets no certificate at all.
#[derive(PartialEq)]
pub(crate) struct ClientCert {
    pub(crate) other_connection: Arc<str>,
    pub(crate) required: Arc<str>,
}

impl Rule for ClientCert {
    fn same_as(&self, other: &dyn Rule) -> bool {
        same(self, other)
    }
    fn name(&self) -> &'static str {
        "client_cert"
    }
    fn check(&self, req: &Request<'_>) -> Option<Denial> {
        let auth = req.site?.client_auth.as_deref()?;
        if req.client_cert.is_some_and(|c| *c.auth == *auth) {
            return None;
        }
        if req.tls {
            let body = "421 Misdirected Request: this site checks client certificates; connect \
                        again with its name as the TLS server name\n";
            return deny(421, &self.other_connection, &text(body));
        }
        match auth.mode {
            ClientCertMode::Optional => None,
            ClientCertMode::Required => deny(
                403,
                &self.required,
                &text("403 Forbidden: this site requires a client certificate over https\n"),
            ),
        }
    }
}

#[derive(PartialEq)]
pub(crate) struct SiteIp {
    pub(crate) deny_id: Arc<str>,
    pub(crate) allow_id: Arc<str>,
}

impl Rule for SiteIp {
    fn same_as(&self, other: &dyn Rule) -> bool {
        same(self, other)
    }
    fn name(&self) -> &'static str {
        "ip (site)"
    }
    fn check(&self, req: &Request<'_>) -> Option<Denial> {
        let rule = match req.site?.ip.refuses(req.client)? {
            "ip_deny" => &self.deny_id,
            _ => &self.allow_id,
        };
        deny(403, rule, &text("403 Forbidden\n"))
    }
}

/// One takedown rule (counted per rule by `menshen_policy_denials_total{rule="takedown:<id>"}`).
#[derive(PartialEq)]
pub(crate) struct Takedown {
    pub(crate) prefix: String,
    pub(crate) id: Arc<str>,
    pub(crate) body: Bytes,
}

#[derive(PartialEq)]
pub(crate) struct Takedowns {
    pub(crate) by_host: HashMap<Box<str>, Vec<Takedown>>,
    /// Entries of `policy.takedown_files`, after the config's own rules.
    pub(crate) lists: super::takedown_list::TakedownIndex,
}

impl Takedowns {
    /// The rule or list entry that takes down `host`, `path` (`path_and_query`): its id and
    /// body.
    pub(crate) fn find(
        &self,
        host: &str,
        path: &str,
        path_and_query: &str,
    ) -> Option<(&Arc<str>, &Bytes)> {
        let rule = self
            .by_host
            .get(host)
            .and_then(|rules| rules.iter().find(|t| path.starts_with(t.prefix.as_str())));
        if let Some(rule) = rule {
            return Some((&rule.id, &rule.body));
        }
        let case = self.lists.find(host, path, path_and_query)?;
        Some((&case.id, &case.body))
    }
}

impl Rule for Takedowns {
    fn same_as(&self, other: &dyn Rule) -> bool {
        same(self, other)
    }
    fn name(&self) -> &'static str {
        "takedown"
    }
    fn check(&self, req: &Request<'_>) -> Option<Denial> {
        let (id, body) = self.find(req.host, req.path, req.path_and_query)?;
        deny(451, id, body)
    }
}

pub(crate) struct Rate {
    pub(crate) table: Arc<RateTable>,
    pub(crate) global: Option<RateLimit>,
    pub(crate) id: Arc<str>,
}

/// The table is the state shared across reloads, not a setting.
impl PartialEq for Rate {
    fn eq(&self, other: &Self) -> bool {
        self.global == other.global && self.id == other.id
    }
}

impl Rule for Rate {
    fn same_as(&self, other: &dyn Rule) -> bool {
        same(self, other)
    }
    fn name(&self) -> &'static str {
        "rate"
    }
    fn check(&self, req: &Request<'_>) -> Option<Denial> {
        let site = req.site.and_then(|s| s.rate);
        let route = req.route.and_then(|r| r.rate);
        for limit in [self.global, site, route].into_iter().flatten() {
            if let Err(wait) = limit.check(&self.table, req.client, req.now) {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                return Some(Denial {
                    status: 429,
                    rule: self.id.clone(),
                    header: Some((http::header::RETRY_AFTER, secs.max(1).to_string())),
                    body: text("429 Too Many Requests\n"),
                });
            }
        }
        None
    }
}

#[derive(PartialEq)]
pub(crate) struct Body {
    pub(crate) id: Arc<str>,
}

impl Rule for Body {
    fn same_as(&self, other: &dyn Rule) -> bool {
        same(self, other)
    }
    fn name(&self) -> &'static str {
        "body"
    }
    fn check(&self, req: &Request<'_>) -> Option<Denial> {
        if req.content_length? > req.site?.max_body_bytes {
            return deny(413, &self.id, &text("413 Content Too Large\n"));
        }
        None
    }
}

#[derive(PartialEq)]
pub(crate) struct NoRoute(pub(crate) Arc<str>);

impl Rule for NoRoute {
    fn same_as(&self, other: &dyn Rule) -> bool {
        same(self, other)
    }
    fn name(&self) -> &'static str {
        "route"
    }
    fn check(&self, req: &Request<'_>) -> Option<Denial> {
        match req.route {
            Some(_) => None,
            None => deny(404, &self.0, &text("404 Not Found\n")),
        }
    }
}
