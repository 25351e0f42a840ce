//! Optional OpenTelemetry trace export (`[otel]`): a server span per recorded request, a client
//! span per upstream attempt and the policy's decision as an event, joined to the request's
//! W3C `traceparent`. Finished spans go to the SDK's batch processor (a bounded queue and a
//! thread of its own), which sends them as OTLP/HTTP protobuf (`trace_export`). Off, the engines
//! hold `None` and build nothing.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, IdGenerator, RandomIdGenerator, SpanData, SpanEvents, SpanLinks,
    SpanProcessor,
};

use crate::semantics::trace_context::{self, TraceParent};

/// `[otel]`: where spans go, under which service name, and the share of traces recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceConfig {
    /// The collector's OTLP/HTTP traces URL (`http://collector:4318/v1/traces`).
    pub endpoint: String,
    /// `service.name` of every span.
    pub service_name: String,
    /// The share (0 to 1) of the traces menshen starts that it records; a request whose
    /// `traceparent` carries a sampling decision keeps it.
    pub sampling_ratio: f64,
}

/// The running export: the batch processor and what every span shares.
pub struct Tracer {
    processor: BatchSpanProcessor,
    scope: InstrumentationScope,
    ratio: f64,
}

impl Tracer {
    /// Starts the export thread for `config` (nothing is sent until a span ends).
    pub fn start(config: &TraceConfig) -> Result<Tracer, String> {
        let processor = super::trace_export::processor(&config.endpoint, &config.service_name)?;
        let scope = InstrumentationScope::builder("menshen")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        Ok(Tracer {
            processor,
            scope,
            ratio: config.sampling_ratio,
        })
    }

    /// The trace of a request that began at `start`, when it is recorded: joined to the
    /// client's `traceparent`, else a new trace whose id is the request id where it can be.
    /// Either way the configured ratio decides by the trace id (so every hop of a trace agrees);
    /// a client's sampled flag can turn recording off, never on beyond the ratio, so a client
    /// cannot make menshen export every request it sends.
    pub fn begin(
        &self,
        traceparent: Option<&[u8]>,
        request_id: &[u8],
        start: Instant,
    ) -> Option<Box<RequestTrace>> {
        let ids = RandomIdGenerator::default();
        let (trace_id, span_id, parent) = match traceparent.and_then(TraceParent::parse) {
            Some(tp) if !tp.sampled() || !sampled(tp.trace_id, self.ratio) => return None,
            Some(tp) => (
                tp.trace_id,
                ids.new_span_id().to_bytes(),
                Some(tp.parent_id),
            ),
            None => {
                let (trace_id, span_id) = match trace_context::trace_id_of(request_id) {
                    // The request id as the trace id and its last half as the span id: what
                    // the access log and an unrecorded trace's `traceparent` say.
                    Some(id) => (id, id[8..].try_into().unwrap_or_default()),
                    None => (ids.new_trace_id().to_bytes(), ids.new_span_id().to_bytes()),
                };
                if !sampled(trace_id, self.ratio) {
                    return None;
                }
                (trace_id, span_id, None)
            }
        };
        Some(Box::new(RequestTrace {
            trace_id,
            span_id,
            parent,
            start: SystemTime::now() - start.elapsed(),
            carrier: ids.new_span_id().to_bytes(),
            events: Vec::new(),
            attempts: Vec::new(),
        }))
    }

    /// Ends a request's spans and queues them for export (never waits: a full queue drops).
    pub fn end(&self, trace: RequestTrace, ended: &Ended<'_>) {
        let now = SystemTime::now();
        let server = SpanId::from_bytes(trace.span_id);
        for a in &trace.attempts {
            let span = self.attempt_span(&trace, a, ended, now);
            self.processor.on_end(span);
        }
        let mut attributes = vec![
            KeyValue::new("http.request.method", ended.method.to_owned()),
            KeyValue::new("http.route", ended.route.to_owned()),
            KeyValue::new("menshen.site", ended.site.to_owned()),
            KeyValue::new("menshen.request_id", ended.request_id.to_owned()),
        ];
        if let Some(status) = ended.status {
            let status = KeyValue::new("http.response.status_code", i64::from(status));
            attributes.push(status);
        }
        if let Some(client) = ended.client {
            attributes.push(KeyValue::new("client.address", client.to_owned()));
        }
        if let Some(host) = ended.host {
            attributes.push(KeyValue::new("server.address", host.to_owned()));
        }
        if let Some(rule) = ended.denied_by {
            attributes.push(KeyValue::new("menshen.policy.denied_by", rule.to_owned()));
        }
        let status = match ended.status.is_some_and(|s| s >= 500) {
            true => Status::error(""),
            false => Status::Unset,
        };
        let name = format!("{} {}", ended.method, ended.route);
        let span = SpanData {
            span_context: context(trace.trace_id, server),
            parent_span_id: trace.parent.map_or(SpanId::INVALID, SpanId::from_bytes),
            parent_span_is_remote: trace.parent.is_some(),
            span_kind: SpanKind::Server,
            name: Cow::Owned(name),
            start_time: trace.start,
            end_time: now,
            attributes,
            dropped_attributes_count: 0,
            events: events(trace.events),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        };
        self.processor.on_end(span);
    }

    /// An upstream attempt's client span, a child of the request's.
    fn attempt_span(
        &self,
        trace: &RequestTrace,
        a: &Attempt,
        ended: &Ended<'_>,
        now: SystemTime,
    ) -> SpanData {
        let last = std::ptr::eq(a, trace.attempts.last().unwrap_or(a));
        // The final attempt without an answer failed as the request did; an earlier one
        // without a recorded failure was given up for the next.
        let failure = match (a.status, a.failure) {
            (Some(_), _) => None,
            (None, Some(kind)) => Some(kind),
            (None, None) if last => Some(ended.upstream_failure.unwrap_or("failed")),
            (None, None) => Some("failed"),
        };
        let mut attributes = vec![
            KeyValue::new("menshen.upstream", a.upstream.clone()),
            KeyValue::new("server.address", a.backend.ip().to_string()),
            KeyValue::new("server.port", i64::from(a.backend.port())),
            KeyValue::new("menshen.upstream.outcome", failure.unwrap_or("response")),
        ];
        if let Some(status) = a.status {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        if let Some(kind) = failure {
            attributes.push(KeyValue::new("error.type", kind));
        }
        SpanData {
            span_context: context(trace.trace_id, SpanId::from_bytes(a.span_id)),
            parent_span_id: SpanId::from_bytes(trace.span_id),
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name: Cow::Owned(format!("upstream {}", a.upstream)),
            start_time: a.start,
            end_time: a.end.unwrap_or(now),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: failure.map_or(Status::Unset, Status::error),
            instrumentation_scope: self.scope.clone(),
        }
    }

    /// Sends what is queued and stops the export thread (at shutdown; blocks up to seconds).
    pub fn shutdown(&self) {
        let _ = self.processor.shutdown();
    }
}

/// What the request's span says of it when it ends.
pub struct Ended<'a> {
    /// The request method.
    pub method: &'a str,
    /// The route's prefix (`/` when none matched).
    pub route: &'a str,
    /// The site's name (`-` when none).
    pub site: &'a str,
    /// The status sent to the client; `None` when none was.
    pub status: Option<u16>,
    /// The request id (as in the access log).
    pub request_id: &'a str,
    /// The client's address (after PROXY protocol and trusted proxies).
    pub client: Option<&'a str>,
    /// The canonical Host.
    pub host: Option<&'a str>,
    /// The policy rule that refused the request.
    pub denied_by: Option<&'a str>,
    /// Why the final attempt at a backend failed, when it did after connecting.
    pub upstream_failure: Option<&'static str>,
}

/// A recorded request's spans while it runs: its ids, its events, its upstream attempts.
pub struct RequestTrace {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    start: SystemTime,
    /// The span id the backend's `traceparent` names: the latest attempt's. An engine may
    /// write the request head once, before its first attempt, and send it again to another
    /// backend after a failed connect; the attempt that sends it always has this id.
    carrier: [u8; 8],
    events: Vec<Event>,
    attempts: Vec<Attempt>,
}

/// One attempt at a backend.
struct Attempt {
    span_id: [u8; 8],
    upstream: String,
    backend: SocketAddr,
    start: SystemTime,
    end: Option<SystemTime>,
    status: Option<u16>,
    failure: Option<&'static str>,
}

impl RequestTrace {
    /// Notes the policy's decision: allowed, or refused by `denied` (rule, status).
    pub fn decided(&mut self, denied: Option<(&str, u16)>) {
        let attributes = match denied {
            None => vec![KeyValue::new("menshen.policy.decision", "allow")],
            Some((rule, status)) => vec![
                KeyValue::new("menshen.policy.decision", "deny"),
                KeyValue::new("menshen.policy.rule", rule.to_owned()),
                KeyValue::new("http.response.status_code", i64::from(status)),
            ],
        };
        let event = Event::new("policy", SystemTime::now(), attributes, 0);
        self.events.push(event);
    }

    /// Starts an attempt at `backend` of `upstream` (the one before it is over).
    pub fn attempt(&mut self, upstream: &str, backend: SocketAddr) {
        let now = SystemTime::now();
        if let Some(last) = self.attempts.last_mut() {
            // Nothing reached that backend: it hands the carrier id on.
            last.span_id = RandomIdGenerator::default().new_span_id().to_bytes();
            last.end.get_or_insert(now);
        }
        self.attempts.push(Attempt {
            span_id: self.carrier,
            upstream: upstream.to_owned(),
            backend,
            start: now,
            end: None,
            status: None,
            failure: None,
        });
    }

    /// The current attempt failed: `kind` as the upstream error metrics name it.
    pub fn failed(&mut self, kind: &'static str) {
        if let Some(last) = self.attempts.last_mut() {
            last.failure = Some(kind);
            last.end = Some(SystemTime::now());
        }
    }

    /// The current attempt's backend answered with `status`.
    pub fn answered(&mut self, status: u16) {
        if let Some(last) = self.attempts.last_mut() {
            last.status = Some(status);
        }
    }

    /// The `traceparent` a backend is sent: this trace, the sending attempt's span, sampled.
    pub fn traceparent(&self) -> [u8; 55] {
        trace_context::traceparent(self.trace_id, self.carrier)
    }
}

/// A recorded span's context.
fn context(trace_id: [u8; 16], span_id: SpanId) -> SpanContext {
    let trace_id = TraceId::from_bytes(trace_id);
    SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    )
}

fn events(events: Vec<Event>) -> SpanEvents {
    let mut out = SpanEvents::default();
    out.events = events;
    out
}

/// Whether a trace menshen starts is recorded: its id, mixed (request ids count up), against
/// `ratio`; the same trace id always decides the same way.
fn sampled(trace_id: [u8; 16], ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let (hi, lo) = trace_id.split_at(8);
    let word = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or_default());
    let mixed = (word(hi) ^ word(lo)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11;
    (mixed as f64) < ratio * (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_follows_the_ratio_for_counted_ids() {
        let prefix = 0x0123_4567_89ab_cdefu64.to_be_bytes();
        let kept = (1..=10_000u64)
            .filter(|n| {
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&prefix);
                id[8..].copy_from_slice(&n.to_be_bytes());
                sampled(id, 0.25)
            })
            .count();
        assert!((2_000..3_000).contains(&kept), "{kept} of 10000 at 0.25");
        assert!(!sampled([1; 16], 0.0));
        assert!(sampled([1; 16], 1.0));
    }
}
