//! The schema of `[otel]` (see `file.rs` for the rest).

use serde::Deserialize;

/// The `service.name` spans carry when `otel.service_name` is not set.
pub const DEFAULT_SERVICE_NAME: &str = "menshen";

/// The share of traces recorded when `otel.sampling_ratio` is not set: all.
pub const DEFAULT_SAMPLING_RATIO: f64 = 1.0;

/// `[otel]`: OpenTelemetry trace export to a collector, over OTLP/HTTP (protobuf).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtelSection {
    /// The collector's traces URL, e.g. `http://otel-collector:4318/v1/traces`.
    pub endpoint: String,
    /// `service.name` of the spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// The share (0 to 1) of the traces menshen starts that it records.
    #[serde(default = "default_sampling_ratio")]
    pub sampling_ratio: f64,
}

fn default_service_name() -> String {
    DEFAULT_SERVICE_NAME.to_owned()
}

fn default_sampling_ratio() -> f64 {
    DEFAULT_SAMPLING_RATIO
}
