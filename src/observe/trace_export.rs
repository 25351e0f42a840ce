//! How finished spans leave the process (`trace`'s neighbour): the SDK's batch processor on its
//! own thread, the OTLP/HTTP protobuf exporter, and `ureq` (already here for log shipping, on
//! the same rustls) as its blocking HTTP client. A failed export is counted and logged; it never
//! reaches a request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use super::metrics::metrics;

/// How long one export may take, connection included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often queued spans are sent.
const EXPORT_DELAY: Duration = Duration::from_secs(1);
/// Spans queued at most; beyond it a span is dropped, never waited for.
const MAX_QUEUE: usize = 4096;
/// The most of a collector's answer that is read.
const MAX_ANSWER: u64 = 1 << 20;

/// The batch processor exporting spans of `service_name` to the collector at `endpoint`.
pub(super) fn processor(endpoint: &str, service_name: &str) -> Result<BatchSpanProcessor, String> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(EXPORT_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .with_http_client(Ureq(agent))
        .build()
        .map_err(|e| format!("otel.endpoint {endpoint:?}: {e}"))?;
    let batch = BatchConfigBuilder::default()
        .with_scheduled_delay(EXPORT_DELAY)
        .with_max_queue_size(MAX_QUEUE)
        .build();
    let mut processor = BatchSpanProcessor::builder(Counted::new(exporter))
        .with_batch_config(batch)
        .build();
    let resource = Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    opentelemetry_sdk::trace::SpanProcessor::set_resource(&mut processor, &resource);
    Ok(processor)
}

/// `ureq` as the exporter's HTTP client; it blocks, which the processor's own thread allows.
#[derive(Debug)]
struct Ureq(ureq::Agent);

#[async_trait::async_trait]
impl HttpClient for Ureq {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, body.to_vec());
        let response = self.0.run(request)?;
        let (parts, mut body) = response.into_parts();
        let answer = body.with_config().limit(MAX_ANSWER).read_to_vec()?;
        Ok(http::Response::from_parts(parts, Bytes::from(answer)))
    }
}

/// The OTLP exporter, its results counted (`menshen_trace_spans_exported_total`,
/// `menshen_trace_export_failures_total`) and a run of failures logged once.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    failing: AtomicBool,
}

impl<E> Counted<E> {
    fn new(inner: E) -> Self {
        Self {
            inner,
            failing: AtomicBool::new(false),
        }
    }
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => {
                metrics().traces.exported.inc_by(spans);
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("trace export works again");
                }
            }
            Err(e) => {
                metrics().traces.failures.inc();
                match self.failing.swap(true, Ordering::Relaxed) {
                    false => {
                        tracing::warn!(error = %e, spans, "trace export failed; spans dropped")
                    }
                    true => tracing::debug!(error = %e, spans, "trace export failed again"),
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
