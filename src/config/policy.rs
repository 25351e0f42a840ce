//! `[policy]` and the per-site policy keys into the runtime [`Policy`] (the rule chain, its
//! limits and timeouts) and each site's [`SitePolicy`].

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method};

use super::file::{
    ClientCertificatesSection, PolicySection, RateLimitSection, SiteSection, TlsSection,
};
use super::Errors;
use crate::policy::icp::{
    is_icp_number, is_public_security_number, ICP_EXAMPLE, PUBLIC_SECURITY_EXAMPLE,
};
use crate::policy::ip::{CidrSet, IpLists};
use crate::policy::rate::{RateLimit, RateTable};
use crate::policy::rules::{
    id, text, Body, ClientCert, GlobalIp, HttpsOnly, Limits, NoRoute, Rate, SiteIp, SniHost,
    Takedown, Takedowns, UnknownHost,
};
use crate::policy::takedown_list::{self, TakedownIndex};
use crate::policy::{Chain, Policy, Rule, SitePolicy};
use crate::tls::client_auth::{ClientAuth, ClientCertMode};
use crate::tls::provider::{TlsProtocol, TlsSource};

/// A stable id for a limit, so that its state survives reloads.
pub(super) fn limit_id(parts: &[&str]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// Compiles a rate limit section, checking its values.
pub(super) fn rate_limit(
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

/// A site's policy keys. `https_port` is the first TLS listener's port (`https_only` needs one).
pub(super) fn site_policy(
    site: &SiteSection,
    p: &PolicySection,
    https_port: Option<u16>,
    errors: &mut Errors<'_>,
) -> SitePolicy {
    let key = format!("site {:?}", site.name);
    check_filings(site, p.require_icp, errors);
    if site.https_only && https_port.is_none() {
        errors.invalid(
            format!("{key}: https_only"),
            "needs a listener with tls = true",
        );
    }
    let ip = IpLists {
        allow: cidrs(&site.allow, &format!("{key}: allow"), errors),
        deny: cidrs(&site.deny, &format!("{key}: deny"), errors),
    };
    let rate = site.rate_limit.as_ref().and_then(|r| {
        let id = limit_id(&["site", &site.name]);
        rate_limit(r, id, &format!("{key}: rate_limit"), errors)
    });
    SitePolicy {
        https_only: site.https_only,
        ip,
        rate,
        max_body_bytes: site.max_body_bytes.unwrap_or(p.max_body_bytes),
        compression: site
            .compression
            .as_ref()
            .and_then(|c| super::compression::compile(c, &key, errors)),
        client_auth: site.client_certificates.as_ref().and_then(|c| {
            client_auth(
                c,
                https_port,
                &format!("{key}: client_certificates"),
                errors,
            )
        }),
        error_pages: super::error_pages::compile(
            &site.error_pages,
            &format!("{key}: error_pages"),
            errors,
        ),
        ..response_edits(site, &key, errors)
    }
}

/// A site's client certificate check, with its CAs loaded.
fn client_auth(
    c: &ClientCertificatesSection,
    https_port: Option<u16>,
    key: &str,
    errors: &mut Errors<'_>,
) -> Option<Arc<ClientAuth>> {
    if https_port.is_none() {
        errors.invalid(key, "needs a listener with tls = true");
    }
    let mode = match c.mode.as_str() {
        "required" => ClientCertMode::Required,
        "optional" => ClientCertMode::Optional,
        other => {
            let why = format!("{other:?} is not \"required\" or \"optional\"");
            errors.invalid(format!("{key}.mode"), why);
            return None;
        }
    };
    let cas = c.cas.iter().map(|p| super::relative_to(errors.file(), p));
    match ClientAuth::load(mode, cas.collect()) {
        Ok(auth) => Some(Arc::new(auth)),
        Err(why) => {
            errors.invalid(format!("{key}.cas"), why);
            None
        }
    }
}

/// What a site changes on its responses: HSTS, headers removed and added, `Server`, `Alt-Svc`;
/// and whether its queries are logged.
fn response_edits(site: &SiteSection, key: &str, errors: &mut Errors<'_>) -> SitePolicy {
    let hsts = site.hsts_max_age.map(|age| {
        let age = age.as_secs();
        let sub = if site.hsts_include_subdomains {
            "; includeSubDomains"
        } else {
            ""
        };
        HeaderValue::from_str(&format!("max-age={age}{sub}"))
            .unwrap_or(HeaderValue::from_static("max-age=0"))
    });
    let remove_headers = super::headers::names(
        &site.remove_response_headers,
        &format!("{key}: remove_response_headers"),
        errors,
    );
    let add_headers = super::header_list(
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
        log_query: site.log_query,
        hsts,
        remove_headers,
        add_headers,
        server,
        alt_svc,
        ..SitePolicy::default()
    }
}

/// Compiles `[policy]`. `previous` lends its rate and connection state so that limits survive
/// a reload; `https_port` is the first TLS listener's port.
pub(super) fn compile(
    p: &PolicySection,
    tls: Option<&TlsSection>,
    previous: Option<&Policy>,
    https_port: Option<u16>,
    errors: &mut Errors<'_>,
) -> Policy {
    let table = previous.map_or_else(|| Arc::new(RateTable::default()), |p| p.rate_table.clone());
    for (key, timeout) in [
        ("policy.header_read_timeout", p.header_read_timeout),
        ("policy.body_read_timeout", p.body_read_timeout),
        ("policy.send_timeout", p.send_timeout),
    ] {
        if timeout.is_zero() {
            errors.invalid(key, "must be above 0s (e.g. \"10s\")");
        }
    }
    let tls = tls_protocol(tls, previous, errors);
    let (lists, takedown_files) = takedown_lists(p, errors);
    Policy {
        chain: chain(p, https_port, &table, lists, errors),
        trusted_proxies: cidrs(&p.trusted_proxies, "policy.trusted_proxies", errors),
        max_connections_per_ip: std::num::NonZeroU32::new(p.max_connections_per_ip),
        connections: previous.map_or_else(Default::default, |p| p.connections.clone()),
        body_read_timeout: p.body_read_timeout,
        send_timeout: p.send_timeout,
        header_read_timeout: p.header_read_timeout,
        // The request line and the header fields, with room for line ends: a head over this is
        // 431 before it is parsed.
        max_head_bytes: p.max_uri_bytes + p.max_header_bytes + 1024,
        keepalive_timeout: (!p.keepalive_timeout.is_zero()).then_some(p.keepalive_timeout),
        rate_table: table,
        tls,
        takedown_files,
    }
}

/// The rule chain, in the order `policy/mod.rs` documents.
fn chain(
    p: &PolicySection,
    https_port: Option<u16>,
    table: &Arc<RateTable>,
    lists: TakedownIndex,
    errors: &mut Errors<'_>,
) -> Chain {
    let mut methods = Vec::new();
    for m in &p.allowed_methods {
        match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Ok(m) => methods.push(m),
            Err(_) => errors.invalid("policy.allowed_methods", format!("{m:?} is not a method")),
        }
    }
    let global_rate = p
        .rate_limit
        .as_ref()
        .and_then(|r| rate_limit(r, limit_id(&["global"]), "policy.rate_limit", errors));
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
            port_suffix,
            id: id("https_only"),
        }),
        Box::new(ClientCert {
            other_connection: id("client_cert_other_connection"),
            required: id("client_cert_required"),
        }),
        Box::new(SiteIp {
            deny_id: id("site_ip_deny"),
            allow_id: id("site_ip_not_allowed"),
        }),
        Box::new(takedowns(p, lists, errors)),
        Box::new(Rate {
            table: table.clone(),
            global: global_rate,
            id: id("rate_limit"),
        }),
        Box::new(Body {
            id: id("body_too_large"),
        }),
        Box::new(NoRoute(id("no_route"))),
    ];
    Chain { rules }
}

/// The entries of `policy.takedown_files` (beside the config file), and the files to watch.
fn takedown_lists(p: &PolicySection, errors: &mut Errors<'_>) -> (TakedownIndex, Vec<PathBuf>) {
    let files: Vec<(String, PathBuf)> = p
        .takedown_files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let path = super::relative_to(errors.file(), f);
            (format!("policy.takedown_files[{i}]"), path)
        })
        .collect();
    let (index, problems) = takedown_list::load(&files);
    for (key, message) in problems {
        errors.invalid(key, message);
    }
    (index, files.into_iter().map(|(_, path)| path).collect())
}

fn takedowns(p: &PolicySection, lists: TakedownIndex, errors: &mut Errors<'_>) -> Takedowns {
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
    Takedowns { by_host, lists }
}

/// The TLS protocol policy: the previous load's when these keys did not change, so the listeners
/// keep their rustls configuration.
fn tls_protocol(
    tls: Option<&TlsSection>,
    previous: Option<&Policy>,
    errors: &mut Errors<'_>,
) -> Arc<TlsProtocol> {
    let source = tls.map_or_else(TlsSource::default, |t| TlsSource {
        min_version: t.min_version.clone(),
        suites: t.cipher_suites.clone(),
        prefer_server_order: t.prefer_server_cipher_order,
        session_resumption: t.session_resumption,
        post_quantum: t.post_quantum,
    });
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
