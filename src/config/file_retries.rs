//! The schema of a route's timeouts and `retries`, and an upstream's `retry_budget` (see
//! `file.rs` for the rest).

use std::time::Duration;

use serde::Deserialize;

use super::duration;

/// Attempts in all when a route sets no `retries.tries` (the first and two retries).
pub const DEFAULT_TRIES: usize = 3;
/// What a route retries on when it sets no `retries.on`: nginx's `error` (a connect failure,
/// a connection broken before a response), not `timeout` (that would multiply load).
pub const DEFAULT_RETRY_ON: [&str; 2] = ["connect", "reset"];
/// The first back-off between tries (Envoy's base interval).
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(25);
/// The longest back-off between tries (ten times the first, as Envoy).
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_millis(250);
/// The longest `Retry-After` waited for on a route without `total_timeout`.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(10);
/// Retries in flight allowed as a share of an upstream's requests in flight (Envoy's 20%).
pub const DEFAULT_BUDGET_PERCENT: u32 = 20;
/// Retries in flight an upstream always allows (Envoy's 3).
pub const DEFAULT_BUDGET_MIN_CONCURRENT: usize = 3;

/// A route's `retries = { ... }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetriesSection {
    /// Attempts in all, the first included (1: none again), at most 5.
    #[serde(default = "default_tries")]
    pub tries: usize,
    /// `connect`, `reset`, `timeout`, `429`, `502`, `503`, `504`.
    #[serde(default = "default_retry_on")]
    pub on: Vec<String>,
    /// The first back-off (doubled each retry, with jitter).
    #[serde(default = "default_backoff", deserialize_with = "duration::required")]
    pub backoff: Duration,
    /// The longest back-off.
    #[serde(
        default = "default_max_backoff",
        deserialize_with = "duration::required"
    )]
    pub max_backoff: Duration,
    /// The longest `Retry-After` waited for without `total_timeout`.
    #[serde(
        default = "default_max_retry_after",
        deserialize_with = "duration::required"
    )]
    pub max_retry_after: Duration,
}

impl Default for RetriesSection {
    fn default() -> Self {
        Self {
            tries: DEFAULT_TRIES,
            on: default_retry_on(),
            backoff: DEFAULT_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        }
    }
}

/// An upstream's `retry_budget = { ... }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetryBudgetSection {
    /// Retries in flight as a share (0-100) of the upstream's requests in flight.
    #[serde(default = "default_budget_percent")]
    pub percent: u32,
    /// Retries in flight always allowed.
    #[serde(default = "default_budget_min_concurrent")]
    pub min_concurrent: usize,
}

impl Default for RetryBudgetSection {
    fn default() -> Self {
        Self {
            percent: DEFAULT_BUDGET_PERCENT,
            min_concurrent: DEFAULT_BUDGET_MIN_CONCURRENT,
        }
    }
}

fn default_tries() -> usize {
    DEFAULT_TRIES
}
fn default_retry_on() -> Vec<String> {
    DEFAULT_RETRY_ON.map(String::from).to_vec()
}
fn default_backoff() -> Duration {
    DEFAULT_BACKOFF
}
fn default_max_backoff() -> Duration {
    DEFAULT_MAX_BACKOFF
}
fn default_max_retry_after() -> Duration {
    DEFAULT_MAX_RETRY_AFTER
}
fn default_budget_percent() -> u32 {
    DEFAULT_BUDGET_PERCENT
}
fn default_budget_min_concurrent() -> usize {
    DEFAULT_BUDGET_MIN_CONCURRENT
}
