//! The rules of the chain: each checks one concern of a request and denies it or lets it
//! pass. `compile` builds them from the config.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::Method;

use super::ip::IpLists;
use super::rate::{RateLimit, RateTable};
use super::{Denial, Request, Rule};

fn deny(status: u16, rule: &Arc<str>, body: &Bytes) -> Option<Denial> {
    Some(Denial {
        status,
        rule: rule.clone(),
        header: None,
        body: body.clone(),
    })
}

pub(super) fn text(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

/// Ids and bodies prepared once, so a denial allocates nothing but its `Arc` bump.
pub(super) fn id(s: &str) -> Arc<str> {
    Arc::from(s)
}

pub(super) struct Limits {
    pub(super) methods: Vec<Method>,
    pub(super) max_uri: usize,
    pub(super) max_header: usize,
    pub(super) ids: [Arc<str>; 3],
    pub(super) bodies: [Bytes; 3],
}

impl Rule for Limits {
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

pub(super) struct GlobalIp {
    pub(super) lists: IpLists,
    pub(super) deny_id: Arc<str>,
    pub(super) allow_id: Arc<str>,
}

impl Rule for GlobalIp {
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

pub(super) struct UnknownHost(pub(super) Arc<str>);

impl Rule for UnknownHost {
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

pub(super) struct SniHost(pub(super) Arc<str>);

impl Rule for SniHost {
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

pub(super) struct HttpsOnly {
    pub(super) sites: Vec<bool>,
    /// `:port` to put in the Location when the TLS listener is not on 443.
    pub(super) port_suffix: String,
    pub(super) id: Arc<str>,
}

impl Rule for HttpsOnly {
    fn name(&self) -> &'static str {
        "https_only"
    }
    fn check(&self, req: &Request<'_>) -> Option<Denial> {
        let (site, _) = req.site?;
        if req.tls || !self.sites.get(site).copied().unwrap_or(false) {
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

pub(super) struct SiteIp {
    pub(super) sites: Vec<IpLists>,
    pub(super) deny_id: Arc<str>,
    pub(super) allow_id: Arc<str>,
}

impl Rule for SiteIp {
    fn name(&self) -> &'static str {
        "ip (site)"
    }
    fn check(&self, req: &Request<'_>) -> Option<Denial> {
        let (site, _) = req.site?;
        let rule = match self.sites.get(site)?.refuses(req.client)? {
            "ip_deny" => &self.deny_id,
            _ => &self.allow_id,
        };
        deny(403, rule, &text("403 Forbidden\n"))
    }
}

/// One takedown rule (counted per rule by `menshen_policy_denials_total{rule="takedown:<id>"}`).
pub(super) struct Takedown {
    pub(super) prefix: String,
    pub(super) id: Arc<str>,
    pub(super) body: Bytes,
}

pub(super) struct Takedowns {
    pub(super) by_host: HashMap<Box<str>, Vec<Takedown>>,
    /// Entries of `policy.takedown_files`, after the config's own rules.
    pub(super) lists: super::takedown_list::TakedownIndex,
}

impl Rule for Takedowns {
    fn name(&self) -> &'static str {
        "takedown"
    }
    fn check(&self, req: &Request<'_>) -> Option<Denial> {
        let rule = self.by_host.get(req.host).and_then(|rules| {
            rules
                .iter()
                .find(|t| req.path.starts_with(t.prefix.as_str()))
        });
        if let Some(rule) = rule {
            return deny(451, &rule.id, &rule.body);
        }
        let case = self.lists.find(req.host, req.path, req.path_and_query)?;
        deny(451, &case.id, &case.body)
    }
}

pub(super) struct Rate {
    pub(super) table: Arc<RateTable>,
    pub(super) global: Option<RateLimit>,
    pub(super) sites: Vec<Option<RateLimit>>,
    pub(super) id: Arc<str>,
}

impl Rule for Rate {
    fn name(&self) -> &'static str {
        "rate"
    }
    fn check(&self, req: &Request<'_>) -> Option<Denial> {
        let site = req
            .site
            .and_then(|(i, _)| self.sites.get(i).copied().flatten());
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

pub(super) struct Body {
    pub(super) sites: Vec<u64>,
    pub(super) id: Arc<str>,
}

impl Rule for Body {
    fn name(&self) -> &'static str {
        "body"
    }
    fn check(&self, req: &Request<'_>) -> Option<Denial> {
        let (site, _) = req.site?;
        let max = *self.sites.get(site)?;
        if req.content_length? > max {
            return deny(413, &self.id, &text("413 Content Too Large\n"));
        }
        None
    }
}

pub(super) struct NoRoute(pub(super) Arc<str>);

impl Rule for NoRoute {
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
