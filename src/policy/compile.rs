//! The policy's compilation from the config: the rule chain, per-site policies, rate limits.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};

use super::icp::{is_icp_number, is_public_security_number, ICP_EXAMPLE, PUBLIC_SECURITY_EXAMPLE};
use super::ip::{CidrSet, IpLists};
use super::rate::{RateLimit, RateTable};
use super::rules::{
    id, text, Body, GlobalIp, HttpsOnly, Limits, NoRoute, Rate, SiteIp, SniHost, Takedown,
    Takedowns, UnknownHost,
};
use super::{Chain, Policy, Rule, SitePolicy};
use crate::config::file::{FileConfig, PolicySection, RateLimitSection, SiteSection};
use crate::config::Errors;
use crate::tls::provider::{TlsProtocol, TlsSource};

/// A stable id for a limit, so that its state survives reloads.
pub(crate) fn limit_id(parts: &[&str]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// Compiles a rate limit section, checking its values.
pub(crate) fn rate_limit(
    section: &RateLimitSection,
    id: u64,
    key: &str,
    errors: &mut Errors<'_>,
) -> Option<RateLimit> {
    if !(section.requests_per_second > 0.0 && section.requests_per_second.is_finite()) {
        errors.invalid(
            format!("{key}.requests_per_second"),
            "must be a positive number",
        );
        return None;
    }
    Some(RateLimit::new(
        id,
        section.requests_per_second,
        section.burst,
    ))
}

fn cidrs(list: &[String], key: &str, errors: &mut Errors<'_>) -> CidrSet {
    CidrSet::parse(list).unwrap_or_else(|e| {
        errors.invalid(key, e);
        CidrSet::default()
    })
}

fn check_filings(site: &SiteSection, require: bool, errors: &mut Errors<'_>) {
    let key = format!("site {:?}", site.name);
    match &site.icp {
        Some(icp) if !is_icp_number(icp) => errors.invalid(
            format!("{key}: icp"),
            format!("{icp:?} is not an ICP filing number (expected like {ICP_EXAMPLE})"),
        ),
        None if require => errors.invalid(
            &key,
            format!(
                "has no icp filing number; every site served in mainland China needs one \
                 (icp = \"{ICP_EXAMPLE}\"), or set policy.require_icp = false"
            ),
        ),
        _ => {}
    }
    if let Some(psf) = &site.public_security_filing {
        if !is_public_security_number(psf) {
            errors.invalid(
                format!("{key}: public_security_filing"),
                format!("{psf:?} is not a public security filing number (expected like {PUBLIC_SECURITY_EXAMPLE})"),
            );
        }
    }
}

fn site_policy(site: &SiteSection, default_body: u64, errors: &mut Errors<'_>) -> SitePolicy {
    let key = format!("site {:?}", site.name);
    let hsts = site.hsts_max_age_seconds.map(|age| {
        let sub = if site.hsts_include_subdomains {
            "; includeSubDomains"
        } else {
            ""
        };
        HeaderValue::from_str(&format!("max-age={age}{sub}"))
            .unwrap_or(HeaderValue::from_static("max-age=0"))
    });
    let mut remove_headers = Vec::new();
    for name in &site.remove_response_headers {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(n) => remove_headers.push(n),
            Err(_) => errors.invalid(
                format!("{key}: remove_response_headers"),
                format!("{name:?} is not a header name"),
            ),
        }
    }
    let add_headers = crate::config::header_list(
        &site.add_response_headers,
        &format!("{key}: add_response_headers"),
        errors,
    );
    let value = |v: &str, what: &str, errors: &mut Errors<'_>| match HeaderValue::from_str(v) {
        Ok(v) => Some(v),
        Err(_) => {
            let why = format!("{v:?} is not a header value (control characters?)");
            errors.invalid(format!("{key}: {what}"), why);
            None
        }
    };
    let server = match site.server_header.as_deref() {
        None => Some(HeaderValue::from_static("menshen")),
        Some("") => None,
        Some(v) => value(v, "server_header", errors),
    };
    let alt_svc = site
        .alt_svc
        .as_deref()
        .and_then(|v| value(v, "alt_svc", errors));
    SitePolicy {
        max_body_bytes: site.max_body_bytes.unwrap_or(default_body),
        log_query: site.log_query,
        hsts,
        remove_headers,
        add_headers,
        server,
        alt_svc,
    }
}

/// Compiles `[policy]` and the per-site policy keys. `previous` lends its rate and connection
/// state so that limits survive a reload; `https_port` is the first TLS listener's port.
pub(crate) fn compile(
    file: &FileConfig,
    previous: Option<&Policy>,
    https_port: Option<u16>,
    errors: &mut Errors<'_>,
) -> Policy {
    let p = &file.policy;
    let mut methods = Vec::new();
    for m in &p.allowed_methods {
        match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Ok(m) => methods.push(m),
            Err(_) => errors.invalid("policy.allowed_methods", format!("{m:?} is not a method")),
        }
    }
    let table = previous.map_or_else(|| Arc::new(RateTable::default()), |p| p.rate_table.clone());
    let global_rate = p
        .rate_limit
        .as_ref()
        .and_then(|r| rate_limit(r, limit_id(&["global"]), "policy.rate_limit", errors));
    let mut site_ip = Vec::new();
    let mut site_rate = Vec::new();
    let mut site_body = Vec::new();
    let mut https_only = Vec::new();
    let mut sites = Vec::new();
    for site in &file.sites {
        let key = format!("site {:?}", site.name);
        check_filings(site, p.require_icp, errors);
        site_ip.push(IpLists {
            allow: cidrs(&site.allow, &format!("{key}: allow"), errors),
            deny: cidrs(&site.deny, &format!("{key}: deny"), errors),
        });
        site_rate.push(site.rate_limit.as_ref().and_then(|r| {
            rate_limit(
                r,
                limit_id(&["site", &site.name]),
                &format!("{key}: rate_limit"),
                errors,
            )
        }));
        let sp = site_policy(site, p.max_body_bytes, errors);
        site_body.push(sp.max_body_bytes);
        if site.https_only && https_port.is_none() {
            errors.invalid(
                format!("{key}: https_only"),
                "needs a listener with tls = true",
            );
        }
        https_only.push(site.https_only);
        sites.push(sp);
    }
    let mut by_host: HashMap<Box<str>, Vec<Takedown>> = HashMap::new();
    for (i, t) in p.takedowns.iter().enumerate() {
        if !t.prefix.starts_with('/') || t.id.is_empty() {
            errors.invalid(
                format!("policy.takedowns[{i}]"),
                "needs an id and a prefix starting with /",
            );
        }
        by_host
            .entry(t.host.to_ascii_lowercase().into())
            .or_default()
            .push(Takedown {
                prefix: t.prefix.clone(),
                id: id(&format!("takedown:{}", t.id)),
                body: Bytes::from(t.body.clone()),
            });
    }
    for rules in by_host.values_mut() {
        rules.sort_by_key(|t| std::cmp::Reverse(t.prefix.len()));
    }
    let (takedown_index, takedown_files) = super::takedown_list::load(&p.takedown_files, errors);
    for (key, ms) in [
        ("policy.header_read_timeout_ms", p.header_read_timeout_ms),
        ("policy.body_read_timeout_ms", p.body_read_timeout_ms),
        ("policy.send_timeout_ms", p.send_timeout_ms),
    ] {
        if ms == 0 {
            errors.invalid(key, "must be at least 1 (milliseconds)");
        }
    }
    let tls = tls_protocol(p, previous, errors);
    let port_suffix = match p.https_redirect_port.or(https_port) {
        Some(443) | None => String::new(),
        Some(port) => format!(":{port}"),
    };
    let rules: Vec<Box<dyn Rule>> = vec![
        Box::new(Limits {
            methods,
            max_uri: p.max_uri_bytes,
            max_header: p.max_header_bytes,
            ids: [
                id("method_not_allowed"),
                id("uri_too_long"),
                id("headers_too_large"),
            ],
            bodies: [
                text("405 Method Not Allowed\n"),
                text("414 URI Too Long\n"),
                text("431 Request Header Fields Too Large\n"),
            ],
        }),
        Box::new(GlobalIp {
            lists: IpLists {
                allow: cidrs(&p.allow, "policy.allow", errors),
                deny: cidrs(&p.deny, "policy.deny", errors),
            },
            deny_id: id("ip_deny"),
            allow_id: id("ip_not_allowed"),
        }),
        Box::new(UnknownHost(id("unknown_host"))),
        Box::new(SniHost(id("sni_host_mismatch"))),
        Box::new(HttpsOnly {
            sites: https_only,
            port_suffix,
            id: id("https_only"),
        }),
        Box::new(SiteIp {
            sites: site_ip,
            deny_id: id("site_ip_deny"),
            allow_id: id("site_ip_not_allowed"),
        }),
        Box::new(Takedowns {
            by_host,
            lists: takedown_index,
        }),
        Box::new(Rate {
            table: table.clone(),
            global: global_rate,
            sites: site_rate,
            id: id("rate_limit"),
        }),
        Box::new(Body {
            sites: site_body,
            id: id("body_too_large"),
        }),
        Box::new(NoRoute(id("no_route"))),
    ];
    Policy {
        chain: Chain { rules },
        trusted_proxies: cidrs(&p.trusted_proxies, "policy.trusted_proxies", errors),
        max_connections_per_ip: p.max_connections_per_ip,
        connections: previous.map_or_else(Default::default, |p| p.connections.clone()),
        sites,
        body_read_timeout: std::time::Duration::from_millis(p.body_read_timeout_ms),
        send_timeout: std::time::Duration::from_millis(p.send_timeout_ms),
        header_read_timeout: std::time::Duration::from_millis(p.header_read_timeout_ms),
        // The request line and the header fields, with room for line ends: a head over this is
        // 431 before it is parsed.
        max_head_bytes: p.max_uri_bytes + p.max_header_bytes + 1024,
        keepalive_timeout_seconds: p.keepalive_timeout_seconds,
        rate_table: table,
        tls,
        takedown_files,
    }
}

/// The TLS protocol policy: the previous load's when these keys did not change, so the listeners
/// keep their rustls configuration.
fn tls_protocol(
    p: &PolicySection,
    previous: Option<&Policy>,
    errors: &mut Errors<'_>,
) -> Arc<TlsProtocol> {
    let source = TlsSource {
        min_version: p.min_tls_version.clone(),
        suites: p.cipher_suites.clone(),
        prefer_server_order: p.prefer_server_cipher_order,
        session_resumption: p.session_resumption,
    };
    match previous {
        Some(prev) if prev.tls.source == source => return prev.tls.clone(),
        _ => {}
    }
    TlsProtocol::compile(source).map_or_else(
        |e| {
            errors.invalid(e.key, e.message);
            Arc::default()
        },
        Arc::new,
    )
}
