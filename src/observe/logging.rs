//! Process log setup: tracing, text or JSON, with pingora's `log` output bridged in.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use super::notify::NotifyConfig;

/// The process log's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event.
    Json,
}

/// The process log, read before the full load so that load errors come out in its format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Text or JSON.
    pub format: LogFormat,
    /// A tracing filter (`info`, `warn,menshen=debug`); `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log.level`. With `notify`,
/// the notification sender starts and reads the warnings and errors whatever the level.
pub fn init(log: &LogSettings, notify: Option<&NotifyConfig>) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only where a person reads it: a file, a pipe or journald gets plain text.
    let colour = std::io::stderr().is_terminal();
    let text = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let notify = notify.and_then(super::notify::start);
    let registry = tracing_subscriber::registry().with(notify);
    // With the `tracing-log` feature, `try_init` also routes the `log` crate (pingora) into tracing.
    let _ = match log.format {
        LogFormat::Json => registry
            .with(text.json().flatten_event(true).with_filter(filter))
            .try_init(),
        LogFormat::Text => registry.with(text.with_filter(filter)).try_init(),
    };
}
