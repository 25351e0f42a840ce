//! The schema of `[[upstreams]]` (see `file.rs` for the rest).

use std::time::Duration;

use serde::Deserialize;

use super::duration;
use super::file_retries::RetryBudgetSection;

/// Upstream TCP (and TLS) connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Consecutive successes that mark an unhealthy backend healthy again.
pub const DEFAULT_HEALTHY_THRESHOLD: usize = 1;
/// Status a health-check response must have.
pub const DEFAULT_HEALTH_EXPECTED_STATUS: u16 = 200;
/// Health-check interval.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(2);
/// Health-check timeout.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a pooled upstream connection may stay idle.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a backend that refused a connection is skipped.
pub const DEFAULT_PASSIVE_EJECTION: Duration = Duration::from_secs(10);
/// Upstream read timeout.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Consecutive failures that mark a healthy backend unhealthy.
pub const DEFAULT_UNHEALTHY_THRESHOLD: usize = 2;
/// Upstream write timeout.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// `[[upstreams]]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// Name that routes refer to.
    pub name: String,
    /// `ip:port` or `hostname:port`, or tables with `addr` and `weight`.
    pub backends: Vec<BackendEntry>,
    /// `round_robin` (weighted), `random` (weighted) or `consistent` (ketama hashing).
    #[serde(default)]
    pub balance: Balance,
    /// What `consistent` hashes: `client_ip`, `path` or `header:NAME`.
    pub hash_key: Option<String>,
    /// Connect to the backends with TLS.
    #[serde(default)]
    pub tls: bool,
    /// SNI and verified name for TLS backends (default: the Host sent upstream).
    pub sni: Option<String>,
    /// Verify the backend certificate and hostname (TLS only).
    #[serde(default = "default_true")]
    pub verify: bool,
    /// PEM roots for verifying backends instead of the Mozilla (webpki) roots.
    pub ca_file: Option<String>,
    /// Speak HTTP/2 to backends: offered by ALPN with TLS (falling back to HTTP/1.1), spoken
    /// from the start (h2c, prior knowledge) without.
    #[serde(default)]
    pub http2: bool,
    /// Connect timeout.
    #[serde(
        default = "default_connect_timeout",
        deserialize_with = "duration::required"
    )]
    pub connect_timeout: Duration,
    /// Read timeout.
    #[serde(
        default = "default_read_timeout",
        deserialize_with = "duration::required"
    )]
    pub read_timeout: Duration,
    /// Write timeout.
    #[serde(
        default = "default_write_timeout",
        deserialize_with = "duration::required"
    )]
    pub write_timeout: Duration,
    /// Idle timeout of pooled connections.
    #[serde(
        default = "default_idle_timeout",
        deserialize_with = "duration::required"
    )]
    pub idle_timeout: Duration,
    /// How long a backend that failed a connect is skipped (0s: never).
    #[serde(
        default = "default_passive_ejection",
        deserialize_with = "duration::required"
    )]
    pub passive_ejection: Duration,
    /// How many of its requests may be retries at once.
    #[serde(default)]
    pub retry_budget: RetryBudgetSection,
    /// Active health check; none when absent.
    pub health_check: Option<HealthCheckSection>,
}

fn default_true() -> bool {
    true
}
fn default_connect_timeout() -> Duration {
    DEFAULT_CONNECT_TIMEOUT
}
fn default_read_timeout() -> Duration {
    DEFAULT_READ_TIMEOUT
}
fn default_write_timeout() -> Duration {
    DEFAULT_WRITE_TIMEOUT
}
fn default_idle_timeout() -> Duration {
    DEFAULT_IDLE_TIMEOUT
}
fn default_passive_ejection() -> Duration {
    DEFAULT_PASSIVE_EJECTION
}

/// One backend: a bare address string or a table with a weight.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum BackendEntry {
    /// `"10.0.0.1:8080"` or `"api.internal:443"`, weight 1.
    Addr(String),
    /// `{ addr = "...", weight = 3 }`
    Weighted(WeightedBackend),
}

/// `{ addr = "...", weight = 3 }` in `backends`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WeightedBackend {
    /// `ip:port` or `hostname:port`.
    pub addr: String,
    /// Relative share of requests.
    pub weight: usize,
}

/// Load-balancing algorithm.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Weighted round robin.
    #[default]
    RoundRobin,
    /// Weighted random.
    Random,
    /// Consistent (ketama) hashing on `hash_key`.
    Consistent,
}

/// `[upstreams.health_check]`
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSection {
    /// `tcp` (connect) or `http` (request `path`, expect `expected_status`).
    pub kind: HealthKind,
    /// Path requested by an `http` check.
    pub path: Option<String>,
    /// Status an `http` check expects.
    #[serde(default = "default_expected_status")]
    pub expected_status: u16,
    /// Interval between checks.
    #[serde(
        default = "default_health_interval",
        deserialize_with = "duration::required"
    )]
    pub interval: Duration,
    /// Timeout of one check.
    #[serde(
        default = "default_health_timeout",
        deserialize_with = "duration::required"
    )]
    pub timeout: Duration,
    /// Consecutive successes to become healthy.
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: usize,
    /// Consecutive failures to become unhealthy.
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: usize,
}

fn default_expected_status() -> u16 {
    DEFAULT_HEALTH_EXPECTED_STATUS
}
fn default_health_interval() -> Duration {
    DEFAULT_HEALTH_INTERVAL
}
fn default_health_timeout() -> Duration {
    DEFAULT_HEALTH_TIMEOUT
}
fn default_healthy_threshold() -> usize {
    DEFAULT_HEALTHY_THRESHOLD
}
fn default_unhealthy_threshold() -> usize {
    DEFAULT_UNHEALTHY_THRESHOLD
}

/// Kind of active health check.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HealthKind {
    /// A TCP (or TLS) connect.
    Tcp,
    /// An HTTP request.
    Http,
}
