//! Prometheus metrics, in the default registry (the one pingora-prometheus serves).
//!
//! Request counters are resolved per (site, route, status class) when a snapshot is compiled
//! (`request_counters`), so the data path does one atomic add and one histogram observation per
//! request. Gauges that describe state (certificates, backend health, log backlog) are refreshed
//! at scrape time.

use std::sync::OnceLock;

use prometheus::{
    register_gauge, register_gauge_vec, register_int_counter, register_int_counter_vec, Gauge,
    GaugeVec, IntCounter, IntCounterVec,
};

pub use super::conn_metrics::{
    conn_metrics, tls_version_label, ConnGauges, ConnMetrics, Gauged, Protocol,
};
pub use super::request_counters::RequestCounters;
pub use crate::route::upstream_metrics::{UpstreamErrorKind, UpstreamMetrics};

pub use super::labels::NONE;

/// Every metric menshen exports, grouped by the part of menshen that keeps it.
pub struct Metrics {
    /// `menshen_upstream_healthy{upstream, backend}`
    pub upstream_healthy: GaugeVec,
    /// `menshen_reloads_total{result}`
    pub reloads: IntCounterVec,
    /// `menshen_last_reload_timestamp_seconds`
    pub last_reload: Gauge,
    /// `menshen_policy_denials_total{site, rule}`
    pub denials: IntCounterVec,
    /// The served certificates'.
    pub certs: CertMetrics,
    /// The access log writer's.
    pub access_log: AccessLogMetrics,
    /// Log shipping's.
    pub shipping: ShippingMetrics,
    /// The OpenTelemetry exporter's.
    pub traces: TraceMetrics,
}

/// The served certificates, refreshed at scrape time and by each reload.
pub struct CertMetrics {
    /// `menshen_certificate_expiry_timestamp_seconds{name, issuer_root}`
    pub expiry: GaugeVec,
    /// `menshen_ocsp_next_update_timestamp_seconds{name}`
    pub ocsp_next_update: GaugeVec,
    /// `menshen_ocsp_status{name, status}`
    pub ocsp_status: GaugeVec,
    /// `menshen_rejected_certificate_files`
    pub rejected_files: Gauge,
}

/// The access log writer's queue and losses.
pub struct AccessLogMetrics {
    /// `menshen_access_log_backlog`
    pub backlog: Gauge,
    /// `menshen_access_log_dropped_total`
    pub dropped: IntCounter,
    /// `menshen_access_log_write_failed_total`
    pub write_failed: IntCounter,
}

/// Sealed log files shipped to object storage.
pub struct ShippingMetrics {
    /// `menshen_log_ship_backlog`
    pub backlog: Gauge,
    /// `menshen_log_ship_failures_total`
    pub failures: IntCounter,
    /// `menshen_log_shipped_total`
    pub shipped: IntCounter,
}

/// Spans sent to the OpenTelemetry collector.
pub struct TraceMetrics {
    /// `menshen_trace_spans_exported_total`
    pub exported: IntCounter,
    /// `menshen_trace_export_failures_total`
    pub failures: IntCounter,
}

// The definitions are static and registered once: failing here is a programming error.
const DEFINED: &str = "static metric definition";

/// The process's metrics, registered on first use.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| Metrics {
        upstream_healthy: register_gauge_vec!(
            "menshen_upstream_healthy",
            "1 if the backend passes its health checks",
            &["upstream", "backend"]
        )
        .expect(DEFINED),
        reloads: register_int_counter_vec!(
            "menshen_reloads_total",
            "Loads and reloads, by result: ok, partial (applied, something left out), rejected \
             (nothing applied)",
            &["result"]
        )
        .expect(DEFINED),
        last_reload: register_gauge!(
            "menshen_last_reload_timestamp_seconds",
            "When the serving configuration was loaded (at start, then by each applied reload)"
        )
        .expect(DEFINED),
        denials: register_int_counter_vec!(
            "menshen_policy_denials_total",
            "Requests (and connections) refused, by site (\"-\": none known yet) and rule",
            &["rule", "site"]
        )
        .expect(DEFINED),
        certs: CertMetrics::register(),
        access_log: AccessLogMetrics::register(),
        shipping: ShippingMetrics::register(),
        traces: TraceMetrics::register(),
    })
}

impl CertMetrics {
    fn register() -> Self {
        CertMetrics {
            expiry: register_gauge_vec!(
                "menshen_certificate_expiry_timestamp_seconds",
                "Not-after of each served certificate",
                &["name", "issuer_root"]
            )
            .expect(DEFINED),
            ocsp_next_update: register_gauge_vec!(
                "menshen_ocsp_next_update_timestamp_seconds",
                "nextUpdate of the OCSP response stapled to each certificate (absent when none is)",
                &["name"]
            )
            .expect(DEFINED),
            ocsp_status: register_gauge_vec!(
                "menshen_ocsp_status",
                "1 for each certificate's OCSP state: good (stapled), revoked, unknown, none",
                &["name", "status"]
            )
            .expect(DEFINED),
            rejected_files: register_gauge!(
                "menshen_rejected_certificate_files",
                "Certificate files left out of the serving configuration (rejected; a last good \
                 version may serve in their place)"
            )
            .expect(DEFINED),
        }
    }
}

impl AccessLogMetrics {
    fn register() -> Self {
        AccessLogMetrics {
            backlog: register_gauge!(
                "menshen_access_log_backlog",
                "Access log lines queued for the writer"
            )
            .expect(DEFINED),
            dropped: register_int_counter!(
                "menshen_access_log_dropped_total",
                "Access log lines dropped because the writer fell behind"
            )
            .expect(DEFINED),
            write_failed: register_int_counter!(
                "menshen_access_log_write_failed_total",
                "Access log lines lost because writing them failed (a full disk, an I/O error)"
            )
            .expect(DEFINED),
        }
    }
}

impl ShippingMetrics {
    fn register() -> Self {
        ShippingMetrics {
            backlog: register_gauge!(
                "menshen_log_ship_backlog",
                "Sealed log files waiting to be shipped to object storage"
            )
            .expect(DEFINED),
            failures: register_int_counter!(
                "menshen_log_ship_failures_total",
                "Attempts to ship a log file that failed (store unreachable, refused, or what was \
                 stored did not read back intact)"
            )
            .expect(DEFINED),
            shipped: register_int_counter!(
                "menshen_log_shipped_total",
                "Log files (with their manifests) shipped and read back intact"
            )
            .expect(DEFINED),
        }
    }
}

impl TraceMetrics {
    fn register() -> Self {
        TraceMetrics {
            exported: register_int_counter!(
                "menshen_trace_spans_exported_total",
                "Spans the OpenTelemetry collector accepted ([otel])"
            )
            .expect(DEFINED),
            failures: register_int_counter!(
                "menshen_trace_export_failures_total",
                "Batches of spans lost because sending them to the collector failed ([otel]); \
                 requests are not affected"
            )
            .expect(DEFINED),
        }
    }
}

impl Metrics {
    /// Counts a refusal by `rule` of a request for `site` (`None`: before any site is known).
    pub fn deny(&self, site: Option<&str>, rule: &str) {
        self.denials
            .with_label_values(&[rule, site.unwrap_or(NONE)])
            .inc();
    }
}

/// Brings counter `c` up to `total`, a count kept elsewhere (read at scrape time).
pub fn catch_up(c: &IntCounter, total: u64) {
    c.inc_by(total.saturating_sub(c.get()));
}
