//! A named pool of backends: selection, peer settings, health and passive ejection.
//!
//! Built from config once; reused across reloads when its settings are unchanged, so health state and
//! pooled connections survive a reload. Health checks and DNS refreshes run in background tasks
//! that end when the last snapshot holding this upstream is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::WrappedX509;
use pingora_load_balancing::selection::{Consistent, Random, RoundRobin};
use pingora_load_balancing::{Backend, Backends, LoadBalancer};

use super::dns::Discovery;
use super::retry_budget::RetryBudget;
pub use super::settings::HashKey;
use super::settings::UpstreamSettings;
use super::upstream_metrics::UpstreamMetrics;
use crate::tls::client::UpstreamTls;

/// Bound on the selection walk of one pick.
const MAX_SELECT_ITERATIONS: usize = 256;

/// The load balancer, by algorithm.
pub enum Balancer {
    /// Weighted round robin.
    RoundRobin(LoadBalancer<RoundRobin>),
    /// Weighted random.
    Random(LoadBalancer<Random>),
    /// Ketama consistent hashing.
    Consistent(LoadBalancer<Consistent>),
}

impl Balancer {
    fn select_with<F: Fn(&Backend, bool) -> bool>(&self, key: &[u8], accept: F) -> Option<Backend> {
        match self {
            Balancer::RoundRobin(lb) => lb.select_with(key, MAX_SELECT_ITERATIONS, accept),
            Balancer::Random(lb) => lb.select_with(key, MAX_SELECT_ITERATIONS, accept),
            Balancer::Consistent(lb) => lb.select_with(key, MAX_SELECT_ITERATIONS, accept),
        }
    }

    fn backends(&self) -> &Backends {
        match self {
            Balancer::RoundRobin(lb) => lb.backends(),
            Balancer::Random(lb) => lb.backends(),
            Balancer::Consistent(lb) => lb.backends(),
        }
    }

    async fn update(&self) -> pingora::Result<()> {
        match self {
            Balancer::RoundRobin(lb) => lb.update().await,
            Balancer::Random(lb) => lb.update().await,
            Balancer::Consistent(lb) => lb.update().await,
        }
    }
}

/// A named pool of backends.
pub struct Upstream {
    /// Name from the config.
    pub name: String,
    /// What it was built from, to decide reuse on reload and for a reload's diff.
    pub settings: UpstreamSettings,
    balancer: Balancer,
    discovery: Arc<Discovery>,
    /// What consistent hashing hashes.
    pub hash_key: HashKey,
    /// Template every request's peer is cloned from.
    peer: HttpPeer,
    /// TLS to its backends from the HTTP/1 engine.
    tls: Option<UpstreamTls>,
    health_interval: Option<Duration>,
    passive_ejection: Duration,
    ejected: Mutex<HashMap<SocketAddr, Instant>>,
    /// When the last ejection ends, in milliseconds after `epoch` (0: none yet). Selection
    /// reads the `ejected` map, and takes its lock, only before then.
    ejections_end: AtomicU64,
    epoch: Instant,
    started: AtomicBool,
    latencies: Arc<CheckLatencies>,
    /// Its attempts, errors, retries, ejections and latencies.
    pub metrics: UpstreamMetrics,
    /// How many of its requests may be retries at once.
    pub budget: RetryBudget,
}

/// Latency of each backend's last passing health check (written by the checker only).
pub type CheckLatencies = Mutex<HashMap<SocketAddr, Duration>>;

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish()
    }
}

/// Everything [`Upstream::new`] needs, compiled from the config.
pub struct UpstreamParts {
    /// Its settings.
    pub settings: UpstreamSettings,
    /// Built load balancer (backends not yet discovered).
    pub balancer: Balancer,
    /// Its discovery.
    pub discovery: Arc<Discovery>,
    /// Hash key.
    pub hash_key: HashKey,
    /// Peer template.
    pub peer: HttpPeer,
    /// TLS to its backends, when `tls = true`.
    pub tls: Option<UpstreamTls>,
    /// Filled by the health check.
    pub latencies: Arc<CheckLatencies>,
}

impl Upstream {
    /// An upstream from compiled parts.
    pub fn new(parts: UpstreamParts) -> Self {
        let settings = parts.settings;
        Self {
            name: settings.name.clone(),
            metrics: UpstreamMetrics::new(&settings.name),
            health_interval: settings.health.as_ref().map(|h| h.interval),
            passive_ejection: settings.passive_ejection,
            budget: RetryBudget::new(
                settings.retry_budget.percent,
                settings.retry_budget.min_concurrent,
            ),
            settings,
            balancer: parts.balancer,
            discovery: parts.discovery,
            hash_key: parts.hash_key,
            peer: parts.peer,
            tls: parts.tls,
            ejected: Mutex::new(HashMap::new()),
            ejections_end: AtomicU64::new(0),
            epoch: Instant::now(),
            started: AtomicBool::new(false),
            latencies: parts.latencies,
        }
    }

    /// Picks a backend, preferring one not in `tried`: healthy and not ejected if possible; if
    /// every untried backend is down, any untried one (a down pool still gets a chance, as in
    /// nginx). With every backend tried (a retry after a reset, to an upstream of one
    /// backend), a healthy one that is not ejected, tried or not.
    pub fn select(&self, key: &[u8], tried: &[SocketAddr]) -> Option<SocketAddr> {
        let untried = |b: &Backend| b.as_inet().is_some_and(|a| !tried.contains(a));
        let check_ejected = self.ejection_in_force();
        let usable = |b: &Backend, healthy: bool| healthy && !(check_ejected && self.is_ejected(b));
        let pick = self
            .balancer
            .select_with(key, |b, healthy| untried(b) && usable(b, healthy));
        pick.or_else(|| self.balancer.select_with(key, |b, _| untried(b)))
            .or_else(|| {
                self.balancer
                    .select_with(key, |b, healthy| usable(b, healthy))
            })
            .and_then(|b| b.as_inet().copied())
    }

    /// Whether some backend may still be ejected: false again once the last ejection ended.
    pub(crate) fn ejection_in_force(&self) -> bool {
        let end = self.ejections_end.load(Ordering::Relaxed);
        end != 0 && self.millis_since_epoch() < end
    }

    fn millis_since_epoch(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn is_ejected(&self, b: &Backend) -> bool {
        let Some(addr) = b.as_inet() else {
            return false;
        };
        let Ok(ejected) = self.ejected.lock() else {
            return false;
        };
        ejected
            .get(addr)
            .is_some_and(|until| Instant::now() < *until)
    }

    /// Skips `addr` for the passive-ejection period after a failed connect.
    pub fn eject(&self, addr: SocketAddr) {
        if self.passive_ejection.is_zero() {
            return;
        }
        if let Ok(mut ejected) = self.ejected.lock() {
            let now = Instant::now();
            ejected.retain(|_, until| *until > now);
            ejected.insert(addr, now + self.passive_ejection);
            let end = self.millis_since_epoch().saturating_add(
                u64::try_from(self.passive_ejection.as_millis()).unwrap_or(u64::MAX),
            );
            // +1: a deadline within the first millisecond is still not 0 ("none").
            self.ejections_end
                .fetch_max(end.saturating_add(1), Ordering::Relaxed);
        }
        self.metrics.ejected(addr);
        tracing::warn!(upstream = %self.name, backend = %addr, "connect failed; backend ejected for {:?}", self.passive_ejection);
    }

    /// The peer for one request to `addr`.
    pub fn peer(&self, addr: SocketAddr, sni: Option<&str>) -> Box<HttpPeer> {
        let mut peer = self.peer.clone();
        peer._address = pingora::protocols::l4::socket::SocketAddr::Inet(addr);
        // SNI is part of the pool key: set it only where it is sent, so plain-HTTP backends
        // share idle connections across Host names.
        if let (true, true, Some(sni)) = (peer.is_tls(), peer.sni.is_empty(), sni) {
            peer.sni = sni.to_owned();
        }
        Box::new(peer)
    }

    /// Timeouts and the rest of the settings of every connection to its backends.
    pub fn options(&self) -> &pingora::upstreams::peer::PeerOptions {
        &self.peer.options
    }

    /// Whether selection hashes a key (consistent hashing).
    pub fn is_hashed(&self) -> bool {
        matches!(self.balancer, Balancer::Consistent(_))
    }

    /// Whether requests to this upstream use TLS.
    pub fn is_tls(&self) -> bool {
        self.peer.is_tls()
    }

    /// How the HTTP/1 engine secures connections to its backends (`None`: plain HTTP).
    pub fn tls(&self) -> Option<&UpstreamTls> {
        self.tls.as_ref()
    }

    /// Whether HTTP/2 is offered to its backends (ALPN over TLS, prior knowledge without).
    pub fn offers_http2(&self) -> bool {
        self.settings.http2
    }

    /// How many backends it has now.
    pub fn backend_count(&self) -> usize {
        self.balancer.backends().get_backend().len()
    }

    /// Each backend with its health (health-check result, ignoring passive ejection).
    pub fn backend_health(&self) -> Vec<(SocketAddr, bool)> {
        let backends = self.balancer.backends();
        backends
            .get_backend()
            .iter()
            .filter_map(|b| b.as_inet().map(|a| (*a, backends.ready(b))))
            .collect()
    }

    /// Latency of the last passing health check of `addr`.
    pub fn check_latency(&self, addr: SocketAddr) -> Option<Duration> {
        self.latencies.lock().ok()?.get(&addr).copied()
    }

    /// Takes over the last good backend addresses of `older`, the same upstream before its
    /// settings changed (see [`Discovery::inherit`]).
    pub fn inherit_addresses(&self, older: &Upstream) {
        self.discovery.inherit(&older.discovery);
    }

    /// Hostnames the last discovery could not resolve, with the addresses kept for each.
    pub fn unresolved(&self) -> Vec<(String, Vec<std::net::IpAddr>)> {
        self.discovery.unresolved()
    }

    /// Runs discovery once (resolving hostnames). Called before the snapshot is published.
    pub async fn discover(&self) -> pingora::Result<()> {
        self.balancer.update().await
    }

    /// Starts the health-check and DNS-refresh tasks once. They stop when the upstream is dropped.
    pub fn start_background(self: &Arc<Self>, rt: &tokio::runtime::Handle) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(interval) = self.health_interval {
            let weak = Arc::downgrade(self);
            rt.spawn(async move {
                loop {
                    let Some(up) = Weak::upgrade(&weak) else {
                        break;
                    };
                    up.balancer.backends().run_health_check(true).await;
                    drop(up);
                    tokio::time::sleep(interval).await;
                }
            });
        }
        if self.discovery.needs_refresh() {
            let weak = Arc::downgrade(self);
            rt.spawn(async move {
                while let Some(wait) = weak.upgrade().map(|u| u.discovery.refresh_interval()) {
                    tokio::time::sleep(wait).await;
                    let Some(up) = weak.upgrade() else { break };
                    if let Err(e) = up.balancer.update().await {
                        tracing::warn!(upstream = %up.name, error = %e, "backend discovery failed");
                    }
                }
            });
        }
    }
}

/// Parses PEM roots for verifying TLS backends into pingora's CA list.
pub fn ca_list(ders: &[rustls::pki_types::CertificateDer<'_>]) -> Arc<[WrappedX509]> {
    ders.iter()
        .filter(|der| x509_parser::parse_x509_certificate(der).is_ok())
        .map(|der| WrappedX509::new(der.to_vec(), pingora::utils::tls::parse_x509))
        .collect::<Vec<_>>()
        .into()
}
