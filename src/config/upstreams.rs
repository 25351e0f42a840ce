//! `[[upstreams]]` sections into [`Upstream`]s: backends, balancing, peer options, health checks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora::protocols::ALPN;
use pingora::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::{Backends, LoadBalancer};

use super::file::{
    BackendEntry, Balance, HealthCheckSection, HealthKind, UpstreamSection, WeightedBackend,
};
use super::{relative_to, Errors};
use crate::route::dns::{Discovery, Dns, Target};
use crate::route::settings::{
    BalanceKind, HealthSettings, Timeouts, TlsSettings, UpstreamSettings,
};
use crate::route::upstream::{ca_list, Balancer, CheckLatencies, HashKey, Upstream, UpstreamParts};
use crate::snapshot::{DnsSettings, Snapshot};
use crate::tls::client::{client_config, UpstreamTls};
use crate::tls::read_pem_certs;

/// The address string of a backend entry.
pub(crate) fn backend_addr(b: &BackendEntry) -> &str {
    match b {
        BackendEntry::Addr(a) | BackendEntry::Weighted(WeightedBackend { addr: a, .. }) => a,
    }
}

/// The upstreams; one whose settings (and the DNS settings) did not change since `previous` is
/// the running one, with its health state and pooled connections.
pub(crate) fn compile(
    sections: &[UpstreamSection],
    dns_settings: &DnsSettings,
    dns: Option<Arc<Dns>>,
    previous: Option<&Snapshot>,
    errors: &mut Errors<'_>,
) -> HashMap<String, Arc<Upstream>> {
    let mut out = HashMap::new();
    for section in sections {
        let key = format!("upstream {:?}", section.name);
        if out.contains_key(&section.name) {
            errors.invalid(&key, "name is used twice");
            continue;
        }
        let wanted = settings(section, &key, errors);
        let reusable = previous
            .filter(|p| p.dns == *dns_settings)
            .and_then(|p| p.upstreams.get(&section.name))
            .filter(|u| u.settings == wanted);
        if let Some(up) = reusable {
            out.insert(section.name.clone(), up.clone());
            continue;
        }
        if let Some(parts) = build(section, wanted, dns.clone(), &key, errors) {
            let up = Upstream::new(parts);
            if let Some(older) = previous.and_then(|p| p.upstreams.get(&section.name)) {
                up.inherit_addresses(older);
            }
            out.insert(section.name.clone(), Arc::new(up));
        }
    }
    out
}

fn build(
    section: &UpstreamSection,
    settings: UpstreamSettings,
    dns: Option<Arc<Dns>>,
    key: &str,
    errors: &mut Errors<'_>,
) -> Option<UpstreamParts> {
    let before = errors.list.len();
    if section.backends.is_empty() {
        errors.invalid(key, "backends is empty; list at least one \"host:port\"");
    }
    let mut targets = Vec::new();
    for (i, b) in section.backends.iter().enumerate() {
        let (addr, weight) = match b {
            BackendEntry::Addr(a) => (a.as_str(), 1),
            BackendEntry::Weighted(WeightedBackend { addr, weight }) => (addr.as_str(), *weight),
        };
        if weight == 0 {
            errors.invalid(format!("{key}: backends[{i}].weight"), "must be at least 1");
        }
        match parse_target(addr, weight) {
            Some(t) => targets.push(t),
            None => errors.invalid(
                format!("{key}: backends[{i}]"),
                format!("{addr:?} is not ip:port or hostname:port"),
            ),
        }
    }
    let hash_key = settings.hash_key.clone();
    let (peer, tls) = peer_template(section, key, errors);
    let health = section
        .health_check
        .as_ref()
        .and_then(|h| health_check(h, section, &peer, key, errors));
    if errors.list.len() > before {
        return None;
    }
    let needs_dns = targets.iter().any(|t| matches!(t, Target::Name { .. }));
    let discovery = Arc::new(Discovery::new(targets, dns.filter(|_| needs_dns)));
    let mut backends = Backends::new(Box::new(SharedDiscovery(discovery.clone())));
    let latencies = Arc::new(CheckLatencies::default());
    if let Some(inner) = health {
        backends.set_health_check(Box::new(TimedCheck {
            inner,
            upstream: section.name.clone(),
            latencies: latencies.clone(),
        }));
    }
    let balancer = match settings.balance {
        BalanceKind::RoundRobin => Balancer::RoundRobin(LoadBalancer::from_backends(backends)),
        BalanceKind::Random => Balancer::Random(LoadBalancer::from_backends(backends)),
        BalanceKind::Consistent => Balancer::Consistent(LoadBalancer::from_backends(backends)),
    };
    Some(UpstreamParts {
        settings,
        balancer,
        discovery,
        hash_key,
        peer,
        tls,
        latencies,
    })
}

/// Wraps a health check to note each backend's check latency and log health changes.
struct TimedCheck {
    inner: Box<dyn HealthCheck + Send + Sync>,
    upstream: String,
    latencies: Arc<CheckLatencies>,
}

#[async_trait::async_trait]
impl HealthCheck for TimedCheck {
    async fn check(&self, target: &pingora_load_balancing::Backend) -> pingora::Result<()> {
        let start = std::time::Instant::now();
        let result = self.inner.check(target).await;
        if let (Ok(()), Some(addr)) = (&result, target.addr.as_inet()) {
            if let Ok(mut l) = self.latencies.lock() {
                l.insert(*addr, start.elapsed());
            }
        }
        result
    }

    async fn health_status_change(&self, target: &pingora_load_balancing::Backend, healthy: bool) {
        if healthy {
            tracing::info!(upstream = %self.upstream, backend = %target.addr, "backend healthy again");
        } else {
            tracing::warn!(upstream = %self.upstream, backend = %target.addr, "backend unhealthy: failed its health checks");
        }
    }

    fn health_threshold(&self, success: bool) -> usize {
        self.inner.health_threshold(success)
    }
}

/// Lets the upstream keep a handle on its discovery (for refresh timing) while pingora owns a box.
struct SharedDiscovery(Arc<Discovery>);

#[async_trait::async_trait]
impl pingora_load_balancing::discovery::ServiceDiscovery for SharedDiscovery {
    async fn discover(
        &self,
    ) -> pingora::Result<(
        std::collections::BTreeSet<pingora_load_balancing::Backend>,
        HashMap<u64, bool>,
    )> {
        self.0.discover().await
    }
}

fn parse_target(addr: &str, weight: usize) -> Option<Target> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Some(Target::Addr(sa, weight));
    }
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    rustls::pki_types::DnsName::try_from(host).ok()?;
    Some(Target::Name {
        host: host.to_ascii_lowercase(),
        port,
        weight,
    })
}

/// What the runtime keeps of a section: every setting, typed, to compare with the next load.
fn settings(section: &UpstreamSection, key: &str, errors: &mut Errors<'_>) -> UpstreamSettings {
    let backends = section
        .backends
        .iter()
        .map(|b| match b {
            BackendEntry::Addr(a) => (a.clone(), 1),
            BackendEntry::Weighted(WeightedBackend { addr, weight }) => (addr.clone(), *weight),
        })
        .collect();
    let tls = section.tls.then(|| TlsSettings {
        sni: section.sni.clone(),
        verify: section.verify,
        ca_file: section
            .ca_file
            .as_deref()
            .map(|f| relative_to(errors.file(), f)),
    });
    UpstreamSettings {
        name: section.name.clone(),
        backends,
        balance: match section.balance {
            Balance::RoundRobin => BalanceKind::RoundRobin,
            Balance::Random => BalanceKind::Random,
            Balance::Consistent => BalanceKind::Consistent,
        },
        hash_key: parse_hash_key(section, key, errors),
        tls,
        http2: section.http2,
        timeouts: Timeouts {
            connect: section.connect_timeout,
            read: section.read_timeout,
            write: section.write_timeout,
            idle: section.idle_timeout,
        },
        passive_ejection: section.passive_ejection,
        retry_budget: super::retries::budget(&section.retry_budget, key, errors),
        health: section.health_check.as_ref().map(|h| HealthSettings {
            http_path: (h.kind == HealthKind::Http).then(|| h.path.clone().unwrap_or_default()),
            expected_status: h.expected_status,
            interval: h.interval,
            timeout: h.timeout,
            healthy_threshold: h.healthy_threshold,
            unhealthy_threshold: h.unhealthy_threshold,
        }),
    }
}

fn parse_hash_key(section: &UpstreamSection, key: &str, errors: &mut Errors<'_>) -> HashKey {
    match section.hash_key.as_deref() {
        None | Some("client_ip") => HashKey::ClientIp,
        Some("path") => HashKey::Path,
        Some(other) => match other
            .strip_prefix("header:")
            .map(|h| http::HeaderName::from_bytes(h.as_bytes()))
        {
            Some(Ok(name)) => HashKey::Header(name),
            _ => {
                errors.invalid(
                    format!("{key}: hash_key"),
                    format!("{other:?} is not client_ip, path or header:NAME"),
                );
                HashKey::ClientIp
            }
        },
    }
}

/// A timeout; `0s` means none.
fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// The upstream's peer template (its timeouts, what health checks connect with), and the
/// engines' TLS client (when `tls = true`).
fn peer_template(
    section: &UpstreamSection,
    key: &str,
    errors: &mut Errors<'_>,
) -> (HttpPeer, Option<UpstreamTls>) {
    let sni = section.sni.clone().unwrap_or_default();
    let mut peer = HttpPeer::new("127.0.0.1:1", section.tls, sni);
    let o = &mut peer.options;
    o.connection_timeout = nonzero(section.connect_timeout);
    o.total_connection_timeout = nonzero(section.connect_timeout.saturating_mul(2));
    o.read_timeout = nonzero(section.read_timeout);
    o.write_timeout = nonzero(section.write_timeout);
    o.idle_timeout = nonzero(section.idle_timeout);
    o.verify_cert = section.verify;
    o.verify_hostname = section.verify;
    o.alpn = match (section.http2, section.tls) {
        (true, true) => ALPN::H2H1,
        // h2c: no ALPN to ask with, so HTTP/2 from the first byte.
        (true, false) => ALPN::H2,
        (false, _) => ALPN::H1,
    };
    if section.tls {
        let roots = match &section.ca_file {
            Some(ca) => {
                let path = relative_to(errors.file(), ca);
                match read_pem_certs(&path) {
                    Ok(c) if !c.is_empty() => c,
                    Ok(_) => {
                        errors.invalid(
                            format!("{key}: ca_file"),
                            format!("{} holds no PEM certificate", path.display()),
                        );
                        Vec::new()
                    }
                    Err(e) => {
                        errors.invalid(format!("{key}: ca_file"), e);
                        Vec::new()
                    }
                }
            }
            None => webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec(),
        };
        o.ca = Some(ca_list(&roots));
        // pingora's connection-pool key ignores the CA: without a group of their own, two
        // upstreams (or two versions of one) at the same address would share connections
        // verified against different roots.
        peer.group_key = pool_group(&section.name, &roots);
        let tls = match client_config(&roots, section.verify, section.http2) {
            Ok(config) => Some(UpstreamTls {
                config: Arc::new(config),
                sni: section.sni.clone().filter(|s| !s.is_empty()),
                // Never 0, which marks plain connections in the engine's pool.
                group: peer.group_key | 1,
            }),
            Err(e) if !roots.is_empty() => {
                errors.invalid(format!("{key}: ca_file"), e);
                None
            }
            Err(_) => None,
        };
        return (peer, tls);
    } else if section.ca_file.is_some() || section.sni.is_some() {
        errors.invalid(key, "ca_file and sni need tls = true");
    }
    (peer, None)
}

fn pool_group(name: &str, roots: &[rustls::pki_types::CertificateDer<'_>]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    for der in roots {
        der.as_ref().hash(&mut h);
    }
    h.finish()
}

fn health_check(
    h: &HealthCheckSection,
    section: &UpstreamSection,
    peer: &HttpPeer,
    key: &str,
    errors: &mut Errors<'_>,
) -> Option<Box<dyn HealthCheck + Send + Sync>> {
    if h.interval.is_zero() || h.healthy_threshold == 0 || h.unhealthy_threshold == 0 {
        errors.invalid(
            format!("{key}: health_check"),
            "interval must be above 0s, healthy_threshold and unhealthy_threshold at least 1",
        );
        return None;
    }
    let timeout = nonzero(h.timeout);
    match h.kind {
        HealthKind::Tcp => {
            if h.path.is_some() {
                errors.invalid(
                    format!("{key}: health_check.path"),
                    "only for kind = \"http\"",
                );
            }
            let mut hc = if section.tls {
                TcpHealthCheck::new_tls(&peer.sni)
            } else {
                TcpHealthCheck::new()
            };
            hc.consecutive_success = h.healthy_threshold;
            hc.consecutive_failure = h.unhealthy_threshold;
            hc.peer_template.options = peer.options.clone();
            hc.peer_template.options.connection_timeout = timeout;
            Some(hc)
        }
        HealthKind::Http => {
            let Some(path) = h.path.as_deref().filter(|p| p.starts_with('/')) else {
                errors.invalid(
                    format!("{key}: health_check.path"),
                    "kind = \"http\" needs a path starting with / (e.g. \"/healthz\")",
                );
                return None;
            };
            let host = section.sni.clone().unwrap_or_else(|| "localhost".into());
            let mut hc = HttpHealthCheck::new(&host, section.tls);
            let Ok(req) = RequestHeader::build("GET", path.as_bytes(), None) else {
                errors.invalid(format!("{key}: health_check.path"), "is not a valid path");
                return None;
            };
            hc.req = req;
            if hc.req.insert_header("Host", host.as_str()).is_err() {
                errors.invalid(key, "sni is not a valid Host header value");
            }
            hc.consecutive_success = h.healthy_threshold;
            hc.consecutive_failure = h.unhealthy_threshold;
            hc.peer_template = peer.clone();
            hc.peer_template.options.connection_timeout = timeout;
            hc.peer_template.options.read_timeout = timeout;
            let expected = h.expected_status;
            hc.validator = Some(Box::new(move |resp| {
                if resp.status.as_u16() == expected {
                    Ok(())
                } else {
                    pingora::Error::e_explain(
                        pingora::ErrorType::HTTPStatus(resp.status.as_u16()),
                        format!("health check expected {expected}"),
                    )
                }
            }));
            Some(Box::new(hc))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;
    use std::time::Instant;

    use super::*;

    const A: &str = "127.0.0.1:1";

    async fn pool(passive_ejection: &str) -> Upstream {
        let section: UpstreamSection = toml::from_str(&format!(
            "name = \"u\"\nbackends = [\"{A}\", \"127.0.0.1:2\"]\n\
             passive_ejection = \"{passive_ejection}\"\n"
        ))
        .expect("section");
        let mut errors = Errors::new(Path::new("t.toml"));
        let key = "upstream \"u\"";
        let wanted = settings(&section, key, &mut errors);
        let parts = build(&section, wanted, None, key, &mut errors).expect("builds");
        let up = Upstream::new(parts);
        up.discover().await.expect("static backends");
        up
    }

    fn picks(up: &Upstream) -> HashSet<Option<SocketAddr>> {
        (0..8).map(|_| up.select(b"", &[])).collect()
    }

    /// The ejection flag once stayed set for good, so every pick after the first failed
    /// connect took the ejection map's lock.
    #[tokio::test]
    async fn an_ejection_ends_and_picks_stop_consulting_it() {
        let up = pool("200ms").await;
        let a: SocketAddr = A.parse().expect("addr");
        assert!(!up.ejection_in_force(), "nothing ejected yet");
        up.eject(a);
        assert!(up.ejection_in_force());
        assert!(
            !picks(&up).contains(&Some(a)),
            "an ejected backend is skipped"
        );
        let start = Instant::now();
        while up.ejection_in_force() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the ejection never ends"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            start.elapsed() >= Duration::from_millis(150),
            "it lasted its period"
        );
        assert!(picks(&up).contains(&Some(a)), "back in rotation afterwards");
    }

    #[tokio::test]
    async fn passive_ejection_of_0s_ejects_nothing() {
        let up = pool("0s").await;
        up.eject(A.parse().expect("addr"));
        assert!(!up.ejection_in_force());
    }
}
