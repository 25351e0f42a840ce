//! Client connection figures: TLS handshakes by result and version, and open connections and
//! requests in flight by listener and protocol.
//!
//! A connection resolves its listener's gauges once, when it is handed to an engine; its
//! requests then move plain atomics (the gauges' own), never a label lookup.

use std::sync::OnceLock;

use prometheus::{
    register_int_counter_vec, register_int_gauge_vec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec,
};

use super::labels::NONE;

/// The HTTP protocol a client connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.x.
    Http1,
    /// HTTP/2 (by ALPN).
    Http2,
}

impl Protocol {
    /// The `protocol` label.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::Http2 => "h2",
        }
    }
}

/// Why a TLS handshake failed, as the `result` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The ClientHello named no host a certificate covers (or none at all).
    UnknownSni,
    /// No protocol version both sides accept.
    Protocol,
    /// No cipher suite (or key exchange group) both sides accept.
    NoSharedCipher,
    /// A malformed or unexpected message.
    BadHello,
    /// Anything else (the peer aborted, an I/O error mid-handshake).
    Other,
}

impl Failure {
    /// Reads the reason out of the handshake error's text (rustls's and the SNI gate's words).
    fn of(error: &str) -> Self {
        let has = |needle: &str| error.contains(needle);
        if has("unrecognized_name") {
            Failure::UnknownSni
        } else if has("NoCipherSuitesInCommon") || has("NoKxGroupsInCommon") {
            Failure::NoSharedCipher
        } else if has("Version") || has("Tls12NotOffered") || has("Tls13") {
            Failure::Protocol
        } else if has("InvalidMessage") || has("InappropriateHandshakeMessage") || has("decode") {
            Failure::BadHello
        } else {
            Failure::Other
        }
    }

    fn label(self) -> &'static str {
        match self {
            Failure::UnknownSni => "unknown_sni",
            Failure::Protocol => "protocol",
            Failure::NoSharedCipher => "no_shared_cipher",
            Failure::BadHello => "bad_hello",
            Failure::Other => "other",
        }
    }
}

/// The connection metric families.
pub struct ConnMetrics {
    /// `menshen_tls_handshakes_total{result, version}`
    handshakes: IntCounterVec,
    ok_tls12: IntCounter,
    ok_tls13: IntCounter,
    /// `menshen_open_connections{listener, protocol}`
    open: IntGaugeVec,
    /// `menshen_requests_in_flight{listener, protocol}`
    in_flight: IntGaugeVec,
}

/// The connection metrics, registered on first use.
pub fn conn_metrics() -> &'static ConnMetrics {
    static METRICS: OnceLock<ConnMetrics> = OnceLock::new();
    const DEFINED: &str = "static metric definition";
    METRICS.get_or_init(|| {
        let handshakes = register_int_counter_vec!(
            "menshen_tls_handshakes_total",
            "TLS handshakes, by result (ok, unknown_sni, protocol, no_shared_cipher, bad_hello, \
             other) and version (\"-\" when none was agreed); handshakes cut by \
             header_read_timeout count as header_timeout denials",
            &["result", "version"]
        )
        .expect(DEFINED);
        ConnMetrics {
            ok_tls12: handshakes.with_label_values(&["ok", "TLSv1.2"]),
            ok_tls13: handshakes.with_label_values(&["ok", "TLSv1.3"]),
            handshakes,
            open: register_int_gauge_vec!(
                "menshen_open_connections",
                "Client connections open now, by listener and protocol",
                &["listener", "protocol"]
            )
            .expect(DEFINED),
            in_flight: register_int_gauge_vec!(
                "menshen_requests_in_flight",
                "Requests being served now, by listener and protocol",
                &["listener", "protocol"]
            )
            .expect(DEFINED),
        }
    })
}

/// The version as the access log and the `version` label write it.
pub fn tls_version_label(version: &str) -> &str {
    match version {
        "TLSv1_3" => "TLSv1.3",
        "TLSv1_2" => "TLSv1.2",
        other => other,
    }
}

impl ConnMetrics {
    /// Counts a completed handshake of `version` (pingora's name, `TLSv1_3`).
    pub fn handshake_ok(&self, version: &str) {
        match tls_version_label(version) {
            "TLSv1.3" => self.ok_tls13.inc(),
            "TLSv1.2" => self.ok_tls12.inc(),
            other => self.handshakes.with_label_values(&["ok", other]).inc(),
        }
    }

    /// Counts a refused or failed handshake, its reason read from `error`.
    pub fn handshake_failed(&self, error: &str) {
        let reason = Failure::of(error).label();
        self.handshakes.with_label_values(&[reason, NONE]).inc();
    }

    /// The gauges of one connection on `listener` (its name; `None`: unnamed): counted open
    /// while the returned value lives.
    pub fn connection(&self, listener: Option<&str>, protocol: Protocol) -> ConnGauges {
        let labels = [listener.unwrap_or(NONE), protocol.label()];
        let open = self.open.with_label_values(&labels);
        open.inc();
        ConnGauges {
            open,
            in_flight: self.in_flight.with_label_values(&labels),
        }
    }
}

/// One open connection's gauges.
#[derive(Debug)]
pub struct ConnGauges {
    open: IntGauge,
    in_flight: IntGauge,
}

impl ConnGauges {
    /// Counts one of the connection's requests in flight while the returned value lives.
    pub fn request(&self) -> Gauged {
        self.in_flight.inc();
        Gauged(self.in_flight.clone())
    }
}

impl Drop for ConnGauges {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// One unit of a gauge, given back on drop.
#[derive(Debug)]
pub struct Gauged(IntGauge);

impl Drop for Gauged {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_failures_are_told_apart_by_their_words() {
        let cases = [
            (
                "TLSHandshakeFailure context: unrecognized_name",
                "unknown_sni",
            ),
            (
                "peer is incompatible: NoCipherSuitesInCommon",
                "no_shared_cipher",
            ),
            (
                "peer is incompatible: SupportedVersionsExtensionRequired",
                "protocol",
            ),
            (
                "received corrupt message of type InvalidMessage",
                "bad_hello",
            ),
            ("Connection reset by peer", "other"),
        ];
        for (error, label) in cases {
            assert_eq!(Failure::of(error).label(), label, "{error}");
        }
    }
}
