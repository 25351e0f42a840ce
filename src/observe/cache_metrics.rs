//! The edge cache's metrics: requests and response bytes per site and result (`hit`, `miss`,
//! `expired`, `revalidated`, `stale`, `bypass`; both label sets bounded by the configured sites), and the store's entries and
//! bytes (set when scraped).

use std::sync::OnceLock;

use prometheus::{register_gauge, register_int_counter_vec, Gauge, IntCounterVec};

/// The cache's metrics.
pub struct CacheMetrics {
    /// `menshen_cache_requests_total{site, result}`
    pub requests: IntCounterVec,
    /// `menshen_cache_response_bytes_total{site, result}`
    pub bytes: IntCounterVec,
    /// `menshen_cache_entries`
    pub entries: Gauge,
    /// `menshen_cache_stored_bytes`
    pub stored_bytes: Gauge,
}

/// The process's cache metrics, registered on first use.
pub fn cache_metrics() -> &'static CacheMetrics {
    static METRICS: OnceLock<CacheMetrics> = OnceLock::new();
    const DEFINED: &str = "static metric definition";
    METRICS.get_or_init(|| CacheMetrics {
        requests: register_int_counter_vec!(
            "menshen_cache_requests_total",
            "Requests to caching routes, by site and result: hit (answered from the cache), \
             miss (forwarded, stored when it may be), expired (stale, forwarded with its \
             validators), revalidated (a 304 made it fresh), stale (answered stale: \
             stale-while-revalidate or stale-if-error), bypass (not looked up: a method, a body \
             or Authorization)",
            &["site", "result"]
        )
        .expect(DEFINED),
        bytes: register_int_counter_vec!(
            "menshen_cache_response_bytes_total",
            "Response body bytes sent for requests to caching routes, by site and result",
            &["site", "result"]
        )
        .expect(DEFINED),
        entries: register_gauge!(
            "menshen_cache_entries",
            "Responses in the edge cache's memory store"
        )
        .expect(DEFINED),
        stored_bytes: register_gauge!(
            "menshen_cache_stored_bytes",
            "Bytes of responses in the edge cache's memory store"
        )
        .expect(DEFINED),
    })
}

impl CacheMetrics {
    /// Counts one request of `site` with `result` and the body bytes it was sent.
    pub fn count(&self, site: &str, result: &str, bytes: usize) {
        self.requests.with_label_values(&[site, result]).inc();
        self.bytes
            .with_label_values(&[site, result])
            .inc_by(bytes as u64);
    }
}
