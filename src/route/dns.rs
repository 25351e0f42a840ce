//! Backend discovery: IP backends as they are, hostnames through the configured resolvers.
//!
//! A failed lookup keeps the last good addresses of that hostname, so a resolver hiccup across
//! the border never empties a pool. The next refresh is due after the shortest TTL seen, clamped
//! to `dns.min_ttl..=dns.max_ttl`.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use pingora_load_balancing::discovery::ServiceDiscovery;
use pingora_load_balancing::Backend;

/// How backend hostnames are resolved, shared by every upstream of a snapshot.
pub struct Dns {
    resolver: TokioResolver,
    min_ttl: Duration,
    max_ttl: Duration,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns")
            .field("min_ttl", &self.min_ttl)
            .field("max_ttl", &self.max_ttl)
            .finish()
    }
}

impl Dns {
    /// A resolver using `servers`, or the system's (`/etc/resolv.conf`) when empty.
    pub fn new(
        servers: &[SocketAddr],
        timeout: Duration,
        min_ttl: Duration,
        max_ttl: Duration,
    ) -> Result<Self, String> {
        let provider = TokioConnectionProvider::default();
        let mut builder = if servers.is_empty() {
            TokioResolver::builder(provider)
                .map_err(|e| format!("cannot read the system resolver configuration: {e}"))?
        } else {
            let mut config = ResolverConfig::new();
            for addr in servers {
                config.add_name_server(NameServerConfig::new(*addr, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(*addr, Protocol::Tcp));
            }
            TokioResolver::builder_with_config(config, provider)
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = timeout;
        opts.attempts = 2;
        opts.positive_min_ttl = Some(min_ttl);
        opts.positive_max_ttl = Some(max_ttl);
        Ok(Self {
            resolver: builder.build(),
            min_ttl,
            max_ttl,
        })
    }
}

/// One configured backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A literal address.
    Addr(SocketAddr, usize),
    /// A hostname to resolve.
    Name {
        /// Hostname.
        host: String,
        /// Port.
        port: u16,
        /// Weight of each resolved address.
        weight: usize,
    },
}

/// Discovery over a fixed list of targets.
pub struct Discovery {
    targets: Vec<Target>,
    dns: Option<Arc<Dns>>,
    last_good: Mutex<HashMap<String, Vec<IpAddr>>>,
    /// Hostnames the last discovery could not resolve.
    unresolved: Mutex<Vec<String>>,
    /// Milliseconds until the next refresh is due, from the last lookup's TTLs.
    refresh_ms: AtomicU64,
}

impl Discovery {
    /// Discovery of `targets`; `dns` is needed when any target is a hostname.
    pub fn new(targets: Vec<Target>, dns: Option<Arc<Dns>>) -> Self {
        let refresh = dns.as_ref().map_or(Duration::MAX, |d| d.min_ttl);
        Self {
            targets,
            dns,
            last_good: Mutex::new(HashMap::new()),
            unresolved: Mutex::new(Vec::new()),
            refresh_ms: AtomicU64::new(refresh.as_millis() as u64),
        }
    }

    /// Whether any target needs DNS (and so periodic refreshes).
    pub fn needs_refresh(&self) -> bool {
        self.targets
            .iter()
            .any(|t| matches!(t, Target::Name { .. }))
    }

    /// Takes over the last good addresses of `older` (the same upstream in the serving
    /// snapshot), so that a changed section whose names do not resolve now keeps serving them.
    pub fn inherit(&self, older: &Discovery) {
        let Ok(old) = older.last_good.lock() else {
            return;
        };
        if let Ok(mut mine) = self.last_good.lock() {
            for (host, ips) in old.iter() {
                mine.entry(host.clone()).or_insert_with(|| ips.clone());
            }
        }
    }

    /// Each hostname the last discovery could not resolve, with the last good addresses it
    /// kept instead (empty: it has none).
    pub fn unresolved(&self) -> Vec<(String, Vec<IpAddr>)> {
        let hosts = self
            .unresolved
            .lock()
            .map(|u| u.clone())
            .unwrap_or_default();
        let last = self.last_good.lock().ok();
        hosts
            .into_iter()
            .map(|h| {
                let kept = last.as_ref().and_then(|l| l.get(&h).cloned());
                (h, kept.unwrap_or_default())
            })
            .collect()
    }

    /// When the next refresh is due.
    pub fn refresh_interval(&self) -> Duration {
        Duration::from_millis(self.refresh_ms.load(Ordering::Relaxed))
    }

    async fn resolve(&self, dns: &Dns, host: &str) -> Option<(Vec<IpAddr>, Instant)> {
        match dns.resolver.lookup_ip(host).await {
            Ok(lookup) => {
                let ips: Vec<IpAddr> = lookup.iter().collect();
                if ips.is_empty() {
                    return None;
                }
                Some((ips, lookup.valid_until()))
            }
            Err(e) => {
                tracing::warn!(host, error = %e, "backend lookup failed; keeping last good addresses");
                None
            }
        }
    }
}

#[async_trait]
impl ServiceDiscovery for Discovery {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let mut backends = BTreeSet::new();
        let mut next = self
            .dns
            .as_ref()
            .map_or(Duration::from_secs(3600), |d| d.max_ttl);
        let mut unresolved = Vec::new();
        for target in &self.targets {
            match target {
                Target::Addr(addr, weight) => {
                    backends.insert(backend(*addr, *weight));
                }
                Target::Name { host, port, weight } => {
                    let Some(dns) = &self.dns else { continue };
                    let ips = match self.resolve(dns, host).await {
                        Some((ips, valid_until)) => {
                            let ttl = valid_until.saturating_duration_since(Instant::now());
                            next = next.min(ttl.clamp(dns.min_ttl, dns.max_ttl));
                            if let Ok(mut last) = self.last_good.lock() {
                                last.insert(host.clone(), ips.clone());
                            }
                            ips
                        }
                        None => {
                            unresolved.push(host.clone());
                            next = next.min(dns.min_ttl);
                            let last = self.last_good.lock().ok();
                            last.and_then(|l| l.get(host).cloned()).unwrap_or_default()
                        }
                    };
                    for ip in ips {
                        backends.insert(backend(SocketAddr::new(ip, *port), *weight));
                    }
                }
            }
        }
        self.refresh_ms
            .store(next.as_millis() as u64, Ordering::Relaxed);
        if let Ok(mut u) = self.unresolved.lock() {
            *u = unresolved;
        }
        Ok((backends, HashMap::new()))
    }
}

fn backend(addr: SocketAddr, weight: usize) -> Backend {
    Backend {
        addr: pingora::protocols::l4::socket::SocketAddr::Inet(addr),
        weight,
        ext: http::Extensions::new(),
    }
}
