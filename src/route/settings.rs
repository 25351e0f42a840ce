//! An upstream's settings as the runtime model keeps them: what decides whether a reload may
//! reuse a running [`super::Upstream`] (with its health state and pooled connections), and what
//! a reload's diff compares.

use std::path::PathBuf;
use std::time::Duration;

/// How an upstream is built, compared whole between two loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// Name that routes refer to.
    pub name: String,
    /// Backends as written (`ip:port` or `hostname:port`) with their weights.
    pub backends: Vec<(String, usize)>,
    /// How a backend is picked.
    pub balance: BalanceKind,
    /// What consistent hashing hashes.
    pub hash_key: HashKey,
    /// TLS to the backends; `None` is plain TCP.
    pub tls: Option<TlsSettings>,
    /// HTTP/2 to the backends (ALPN with TLS, prior knowledge without).
    pub http2: bool,
    /// Connect, read, write and pooled-idle timeouts (zero: none).
    pub timeouts: Timeouts,
    /// How long a backend that failed a connect is skipped.
    pub passive_ejection: Duration,
    /// How many of its requests may be retries at once.
    pub retry_budget: BudgetSettings,
    /// The active health check, if any.
    pub health: Option<HealthSettings>,
}

/// Load-balancing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceKind {
    /// Weighted round robin.
    RoundRobin,
    /// Weighted random.
    Random,
    /// Ketama consistent hashing.
    Consistent,
}

/// TLS to an upstream's backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// SNI and verified name (default: the Host sent upstream).
    pub sni: Option<String>,
    /// Verify the certificate and the name.
    pub verify: bool,
    /// Roots instead of the webpki ones.
    pub ca_file: Option<PathBuf>,
}

/// An upstream's timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP (and TLS) connect.
    pub connect: Duration,
    /// Each read.
    pub read: Duration,
    /// Each write.
    pub write: Duration,
    /// A pooled connection's idle time.
    pub idle: Duration,
}

/// An upstream's retry budget: retries in flight at most `percent` of its requests in flight,
/// or `min_concurrent`, whichever is more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetSettings {
    /// Share (0-100) of its requests in flight.
    pub percent: u32,
    /// Retries in flight always allowed.
    pub min_concurrent: usize,
}

/// An active health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// `None` for a TCP connect check, else the path of an HTTP check.
    pub http_path: Option<String>,
    /// Status an HTTP check expects.
    pub expected_status: u16,
    /// Time between checks.
    pub interval: Duration,
    /// Timeout of one check.
    pub timeout: Duration,
    /// Consecutive successes to become healthy.
    pub healthy_threshold: usize,
    /// Consecutive failures to become unhealthy.
    pub unhealthy_threshold: usize,
}

/// What consistent hashing hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client address.
    ClientIp,
    /// The request path.
    Path,
    /// A request header's value.
    Header(http::HeaderName),
}
