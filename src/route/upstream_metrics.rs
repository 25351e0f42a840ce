//! Per-upstream figures: attempts, errors by kind, retries, ejections, and the time to connect
//! and to the response's first byte. Each upstream resolves its series once when it is built,
//! so an attempt moves plain atomics; only ejections (rare) look a backend's series up.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{
    register_histogram_vec, register_int_counter_vec, Histogram, HistogramVec, IntCounter,
    IntCounterVec,
};

/// Buckets of every latency histogram, in seconds.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Why an attempt at a backend failed, as the `kind` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// The backend refused the TCP connection.
    ConnectRefused,
    /// No TCP (or TLS) connection within the connect timeouts.
    ConnectTimeout,
    /// TCP connected and the TLS handshake failed (certificate, protocol).
    Tls,
    /// Another connect failure (unreachable network, no route).
    Connect,
    /// Connected, then the connection was reset or closed, or the response was unreadable.
    Reset,
    /// Connected, then no response within `read_timeout` / `write_timeout`.
    Timeout,
}

impl UpstreamErrorKind {
    /// Every kind, in label order.
    pub const ALL: [UpstreamErrorKind; 6] = [
        UpstreamErrorKind::ConnectRefused,
        UpstreamErrorKind::ConnectTimeout,
        UpstreamErrorKind::Tls,
        UpstreamErrorKind::Connect,
        UpstreamErrorKind::Reset,
        UpstreamErrorKind::Timeout,
    ];

    /// The `kind` label.
    pub fn label(self) -> &'static str {
        match self {
            UpstreamErrorKind::ConnectRefused => "connect_refused",
            UpstreamErrorKind::ConnectTimeout => "connect_timeout",
            UpstreamErrorKind::Tls => "tls",
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Reset => "reset",
            UpstreamErrorKind::Timeout => "timeout",
        }
    }

    /// A failed connect: `handshake` when TCP connected and TLS failed.
    pub fn of_connect(error: &std::io::Error, handshake: bool) -> Self {
        match error.kind() {
            _ if handshake => UpstreamErrorKind::Tls,
            std::io::ErrorKind::ConnectionRefused => UpstreamErrorKind::ConnectRefused,
            std::io::ErrorKind::TimedOut => UpstreamErrorKind::ConnectTimeout,
            _ => UpstreamErrorKind::Connect,
        }
    }
}

/// The `reason` labels of retries (`route::retry::Failure::label`).
pub const RETRY_REASONS: [&str; 8] = [
    "connect", "reset", "refused", "timeout", "429", "502", "503", "504",
];

struct Families {
    attempts: IntCounterVec,
    errors: IntCounterVec,
    retries: IntCounterVec,
    ejections: IntCounterVec,
    budget_exhausted: IntCounterVec,
    connect: HistogramVec,
    first_byte: HistogramVec,
}

fn families() -> &'static Families {
    static FAMILIES: OnceLock<Families> = OnceLock::new();
    const DEFINED: &str = "static metric definition";
    FAMILIES.get_or_init(|| Families {
        attempts: register_int_counter_vec!(
            "menshen_upstream_requests_total",
            "Attempts to send a request to a backend of the upstream (retries included)",
            &["upstream"]
        )
        .expect(DEFINED),
        errors: register_int_counter_vec!(
            "menshen_upstream_errors_total",
            "Failed attempts, by upstream and kind (connect_refused, connect_timeout, tls, \
             connect, reset, timeout)",
            &["kind", "upstream"]
        )
        .expect(DEFINED),
        retries: register_int_counter_vec!(
            "menshen_upstream_retries_total",
            "Attempts made on another backend after a failed one, by upstream and reason \
             (connect, reset, refused, timeout, 429, 502, 503, 504)",
            &["reason", "upstream"]
        )
        .expect(DEFINED),
        ejections: register_int_counter_vec!(
            "menshen_upstream_ejections_total",
            "Backends passively ejected after a failed connect, by upstream and backend",
            &["backend", "upstream"]
        )
        .expect(DEFINED),
        budget_exhausted: register_int_counter_vec!(
            "menshen_upstream_retry_budget_exhausted_total",
            "Retries not made because the upstream's retry budget was spent",
            &["upstream"]
        )
        .expect(DEFINED),
        connect: register_histogram_vec!(
            "menshen_upstream_connect_seconds",
            "Time to connect to a backend (TCP, and TLS where the upstream uses it)",
            &["upstream"],
            LATENCY_BUCKETS.to_vec()
        )
        .expect(DEFINED),
        first_byte: register_histogram_vec!(
            "menshen_upstream_first_byte_seconds",
            "Time from picking a backend to its response header (connect included)",
            &["upstream"],
            LATENCY_BUCKETS.to_vec()
        )
        .expect(DEFINED),
    })
}

/// One upstream's series, resolved when the upstream is built.
pub struct UpstreamMetrics {
    name: String,
    attempts: IntCounter,
    errors: [IntCounter; 6],
    retries: [IntCounter; RETRY_REASONS.len()],
    budget_exhausted: IntCounter,
    connect: Histogram,
    first_byte: Histogram,
}

impl UpstreamMetrics {
    /// The series of upstream `name` (every one shown from the start, at 0).
    pub fn new(name: &str) -> Self {
        let f = families();
        Self {
            name: name.to_owned(),
            attempts: f.attempts.with_label_values(&[name]),
            errors: UpstreamErrorKind::ALL.map(|k| f.errors.with_label_values(&[k.label(), name])),
            retries: RETRY_REASONS.map(|r| f.retries.with_label_values(&[r, name])),
            budget_exhausted: f.budget_exhausted.with_label_values(&[name]),
            connect: f.connect.with_label_values(&[name]),
            first_byte: f.first_byte.with_label_values(&[name]),
        }
    }

    /// Counts an attempt.
    pub fn attempt(&self) {
        self.attempts.inc();
    }

    /// Counts a retry after a failure of `reason` (a [`RETRY_REASONS`] label).
    pub fn retry(&self, reason: &str) {
        if let Some(i) = RETRY_REASONS.iter().position(|r| *r == reason) {
            self.retries[i].inc();
        }
    }

    /// Counts a retry the budget refused.
    pub fn budget_exhausted(&self) {
        self.budget_exhausted.inc();
    }

    /// Counts a failed attempt.
    pub fn error(&self, kind: UpstreamErrorKind) {
        // The variants' order is `ALL`'s.
        self.errors[kind as usize].inc();
    }

    /// Notes a new connection's connect time.
    pub fn connected(&self, took: Duration) {
        self.connect.observe(took.as_secs_f64());
    }

    /// Notes the time to a response header.
    pub fn first_byte(&self, took: Duration) {
        self.first_byte.observe(took.as_secs_f64());
    }

    /// Counts an ejection of `backend`.
    pub fn ejected(&self, backend: SocketAddr) {
        families()
            .ejections
            .with_label_values(&[&backend.to_string(), &self.name])
            .inc();
    }
}
