//! Process log setup: tracing, text or JSON, with pingora's `log` output bridged in.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `level`.
pub fn init(format: &str, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let text = tracing_subscriber::fmt::layer().with_target(false);
    let registry = tracing_subscriber::registry().with(filter);
    // With the `tracing-log` feature, `try_init` also routes the `log` crate (pingora) into tracing.
    let _ = match format {
        "json" => registry.with(text.json().flatten_event(true)).try_init(),
        _ => registry.with(text).try_init(),
    };
}
