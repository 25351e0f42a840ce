//! `[[sites]]` sections into routed [`Site`]s with precompiled responses.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};

use super::file::{PolicySection, RedirectSection, RouteSection, SiteSection};
use super::headers::EditKeys;
use super::policy::{limit_id, rate_limit};
use super::Errors;
use crate::policy::headers::HeaderEdits;
use crate::policy::{RoutePolicy, SitePolicy};
use crate::route::router::{Canned, ProxyAction, Redirect, Rewrite, Route};
use crate::route::{Action, Site, Upstream};

/// The sites with their routes and policies; `https_port` is the first TLS listener's port.
pub(crate) fn compile(
    sections: &[SiteSection],
    policy: &PolicySection,
    https_port: Option<u16>,
    upstreams: &HashMap<String, Arc<Upstream>>,
    errors: &mut Errors<'_>,
) -> Vec<Site> {
    let mut names = HashSet::new();
    let mut claimed: HashMap<String, &str> = HashMap::new();
    let mut sites = Vec::new();
    for s in sections {
        let key = format!("site {:?}", s.name);
        if !names.insert(s.name.as_str()) {
            errors.invalid(&key, "name is used twice");
        }
        if s.hosts.is_empty() {
            errors.invalid(&key, "hosts is empty; list the Host names this site serves");
        }
        for host in &s.hosts {
            let lower = host.to_ascii_lowercase();
            if !valid_host(&lower) {
                errors.invalid(
                    format!("{key}: hosts"),
                    format!("{host:?} is not a host name, IP address or *.wildcard"),
                );
            }
            if let Some(other) = claimed.insert(lower, &s.name) {
                errors.invalid(
                    format!("{key}: hosts"),
                    format!("{host:?} is already served by site {other:?}"),
                );
            }
        }
        if s.routes.is_empty() {
            errors.invalid(&key, "has no [[sites.routes]]; add one with prefix = \"/\"");
        }
        let policy = super::policy::site_policy(s, policy, https_port, errors);
        let edits = site_edits(s, &policy, &key, errors);
        let mut routes: Vec<Route> = s
            .routes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let key = format!("{key}: routes[{i}]");
                let mut route = route(r, s, upstreams, &key, errors)?;
                route.headers = edits.then(&super::headers::compile(&route_keys(r), &key, errors));
                Some(route)
            })
            .collect();
        // Stable: among equal prefixes, config order decides (methods-restricted ones first).
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        sites.push(Site {
            name: s.name.clone(),
            hosts: s.hosts.clone(),
            routes,
            policy,
        });
    }
    sites
}

/// The site's own header edits: its request edits, and the response edits its policy holds.
fn site_edits(
    s: &SiteSection,
    policy: &SitePolicy,
    key: &str,
    errors: &mut Errors<'_>,
) -> HeaderEdits {
    let keys = EditKeys {
        request: &s.request_headers,
        remove_response: &[],
        add_response: &BTreeMap::new(),
    };
    HeaderEdits {
        response_remove: policy.remove_headers.clone(),
        response_set: policy.add_headers.clone(),
        ..super::headers::compile(&keys, key, errors)
    }
}

fn route_keys(r: &RouteSection) -> EditKeys<'_> {
    EditKeys {
        request: &r.request_headers,
        remove_response: &r.remove_response_headers,
        add_response: &r.add_response_headers,
    }
}

fn valid_host(host: &str) -> bool {
    let base = host.strip_prefix("*.").unwrap_or(host);
    host.parse::<std::net::IpAddr>().is_ok()
        || (!base.contains('*') && rustls::pki_types::DnsName::try_from(base).is_ok())
}

fn route(
    r: &RouteSection,
    site: &SiteSection,
    upstreams: &HashMap<String, Arc<Upstream>>,
    key: &str,
    errors: &mut Errors<'_>,
) -> Option<Route> {
    let before = errors.list.len();
    let site_name = site.name.as_str();
    if !r.prefix.starts_with('/') {
        errors.invalid(
            format!("{key}.prefix"),
            format!("{:?} must start with /", r.prefix),
        );
    }
    let methods = r.methods.as_ref().map(|list| methods(list, key, errors));
    let actions = [
        r.upstream.is_some(),
        r.respond.is_some(),
        r.redirect.is_some(),
    ];
    if actions.iter().filter(|a| **a).count() != 1 {
        errors.invalid(
            key,
            "needs exactly one of upstream = \"NAME\", respond = { ... } or redirect = { ... }",
        );
        return None;
    }
    let exchange = [
        r.connect_timeout,
        r.first_byte_timeout,
        r.idle_timeout,
        r.total_timeout,
    ];
    let proxy_only = r.strip_prefix
        || r.replace_prefix.is_some()
        || r.host_header.is_some()
        || r.retries.is_some()
        || r.cache.is_some()
        || exchange.iter().any(Option::is_some);
    if proxy_only && r.upstream.is_none() {
        errors.invalid(
            key,
            "strip_prefix, replace_prefix, host_header, retries, cache and the timeouts only \
             apply to upstream routes",
        );
    }
    let action = if let Some(name) = &r.upstream {
        proxy_action(r, site, name, upstreams, key, errors)
    } else if let Some(resp) = &r.respond {
        canned(resp, key, errors).map(|c| Action::Respond(Arc::new(c)))
    } else {
        r.redirect.as_ref().and_then(|rd| redirect(rd, key, errors))
    };
    if errors.list.len() > before {
        return None;
    }
    let rate = r.rate_limit.as_ref().and_then(|limit| {
        let id = limit_id(&[site_name, &r.prefix, &format!("{:?}", r.methods)]);
        rate_limit(limit, id, &format!("{key}.rate_limit"), errors)
    });
    Some(Route {
        prefix: r.prefix.clone(),
        methods,
        action: action?,
        policy: RoutePolicy { rate },
        headers: HeaderEdits::default(),
    })
}

fn methods(list: &[String], key: &str, errors: &mut Errors<'_>) -> Vec<Method> {
    list.iter()
        .filter_map(
            |m| match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(m) => Some(m),
                Err(_) => {
                    errors.invalid(format!("{key}.methods"), format!("{m:?} is not a method"));
                    None
                }
            },
        )
        .collect()
}

fn redirect(rd: &RedirectSection, key: &str, errors: &mut Errors<'_>) -> Option<Action> {
    let status = StatusCode::from_u16(rd.status)
        .ok()
        .filter(|s| matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308));
    if status.is_none() || HeaderValue::from_str(&rd.to).is_err() {
        errors.invalid(
            format!("{key}.redirect"),
            "needs status 301, 302, 303, 307 or 308 and a valid `to` URL",
        );
    }
    Some(Action::Redirect(Redirect {
        status: status?,
        to: rd.to.clone(),
        keep_path: rd.keep_path,
    }))
}

fn proxy_action(
    r: &RouteSection,
    site: &SiteSection,
    name: &str,
    upstreams: &HashMap<String, Arc<Upstream>>,
    key: &str,
    errors: &mut Errors<'_>,
) -> Option<Action> {
    let Some(upstream) = upstreams.get(name) else {
        errors.invalid(
            format!("{key}.upstream"),
            format!("no [[upstreams]] named {name:?}"),
        );
        return None;
    };
    let rewrite = match (&r.replace_prefix, r.strip_prefix) {
        (Some(_), true) => {
            errors.invalid(key, "use strip_prefix or replace_prefix, not both");
            return None;
        }
        (Some(with), false) => Rewrite::ReplacePrefix(with.clone()),
        (None, true) => Rewrite::ReplacePrefix("/".into()),
        (None, false) => Rewrite::Keep,
    };
    let host_header = match &r.host_header {
        Some(h) => match HeaderValue::from_str(h) {
            Ok(v) => Some(v),
            Err(_) => {
                errors.invalid(
                    format!("{key}.host_header"),
                    format!("{h:?} is not a valid Host"),
                );
                return None;
            }
        },
        None => None,
    };
    Some(Action::Proxy(ProxyAction {
        upstream: upstream.clone(),
        rewrite,
        host_header,
        timeouts: super::retries::timeouts(r, &upstream.settings.timeouts),
        retries: super::retries::policy(r, key, errors),
        cache: super::cache::rules(site.cache.as_ref(), r.cache.as_ref(), key, errors),
    }))
}

fn canned(
    resp: &super::file::RespondSection,
    key: &str,
    errors: &mut Errors<'_>,
) -> Option<Canned> {
    let Some(status) = StatusCode::from_u16(resp.status)
        .ok()
        .filter(|s| s.as_u16() >= 200)
    else {
        errors.invalid(
            format!("{key}.respond.status"),
            format!("{} is not a final HTTP status (200-599)", resp.status),
        );
        return None;
    };
    let headers = super::header_list(&resp.headers, &format!("{key}.respond.headers"), errors);
    Some(Canned {
        status,
        headers,
        body: Bytes::from(resp.body.clone()),
    })
}
