//! Process log setup: tracing, text or JSON, with pingora's `log` output bridged in.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `level`.
pub fn init(format: &str, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let text = tracing_subscriber::fmt::layer().with_target(false);
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(QuietHeaderFailures);
    // With the `tracing-log` feature, `try_init` also routes the `log` crate (pingora) into tracing.
    let _ = match format {
        "json" => registry.with(text.json().flatten_event(true)).try_init(),
        _ => registry.with(text).try_init(),
    };
}

/// Drops the error line pingora-proxy writes for every connection that ends before its request
/// header is complete ("Fail to proxy: ..., downstream session type: ..."): a slowloris flood or
/// a port scan would write one error line per connection. Connections the header clock cuts are
/// counted in `menshen_policy_denials_total{rule="header_timeout"}` instead; pingora's other
/// "Fail to proxy" lines (upstream failures, with tries and status) stay.
struct QuietHeaderFailures;

impl<S: Subscriber> Layer<S> for QuietHeaderFailures {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        // Bridged `log` records all come from tracing-log's callsites, whose target is "log".
        if event.metadata().target() != "log" {
            return true;
        }
        let mut record = LogRecord::default();
        event.record(&mut record);
        !record.is_header_failure()
    }
}

/// The fields of a bridged `log` record that identify it.
#[derive(Default)]
struct LogRecord {
    from_proxy: bool,
    message: String,
}

impl LogRecord {
    fn is_header_failure(&self) -> bool {
        self.from_proxy
            && self.message.starts_with("Fail to proxy")
            && self.message.contains("downstream session type")
    }
}

impl Visit for LogRecord {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "log.target" {
            self.from_proxy = value == "pingora_proxy";
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        }
    }
}
