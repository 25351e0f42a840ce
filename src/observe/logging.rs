//! Process log setup: tracing with pingora's `log` output bridged in.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. The level comes from `RUST_LOG` (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // With the `tracing-log` feature, `init` also routes the `log` crate (pingora) into tracing.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}
