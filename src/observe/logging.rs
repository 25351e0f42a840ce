//! Process log setup: tracing, text or JSON, with pingora's `log` output bridged in.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::file::NotifySection;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `level`. With `notify`, the
/// notification sender starts and reads the warnings and errors whatever the level.
pub fn init(format: &str, level: &str, notify: Option<&NotifySection>) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let text = tracing_subscriber::fmt::layer().with_target(false);
    let notify = notify.and_then(super::notify::start);
    let registry = tracing_subscriber::registry().with(notify);
    // With the `tracing-log` feature, `try_init` also routes the `log` crate (pingora) into tracing.
    let _ = match format {
        "json" => registry
            .with(text.json().flatten_event(true).with_filter(filter))
            .try_init(),
        _ => registry.with(text.with_filter(filter)).try_init(),
    };
}
