//! `[notify]`: robot webhooks told when a certificate nears its expiry, is rejected, or a
//! reload is refused. Read at start; changing it needs a restart.

use std::time::Duration;

use serde::Deserialize;

use super::duration;

/// Shortest time between two messages to one webhook; what happens meanwhile is sent together.
pub const DEFAULT_NOTIFY_MIN_INTERVAL: Duration = Duration::from_secs(60);

/// `[notify]`
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    /// Shortest time between two messages to one webhook.
    #[serde(
        default = "default_min_interval",
        deserialize_with = "duration::required"
    )]
    pub min_interval: Duration,
    /// Where messages go.
    #[serde(default)]
    pub webhooks: Vec<WebhookSection>,
}

fn default_min_interval() -> Duration {
    DEFAULT_NOTIFY_MIN_INTERVAL
}

/// `[[notify.webhooks]]`
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// `wecom`, `dingtalk`, `feishu` (their group robots) or `json` (any receiver).
    pub kind: WebhookKind,
    /// The robot's webhook address (`http://` or `https://`).
    pub url: String,
    /// Which events: `expiring`, `rejected`, `reload_refused`. Default: all.
    #[serde(default = "all_events")]
    pub events: Vec<NotifyEvent>,
}

/// A robot's message format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WebhookKind {
    /// 企业微信 group robot.
    Wecom,
    /// 钉钉 custom robot.
    Dingtalk,
    /// 飞书 custom bot.
    Feishu,
    /// `{"event": ..., "message": ...}` to any receiver.
    Json,
}

/// What is worth a message.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// A certificate entered its expiry warning window (`tls.expiry_warning`).
    Expiring,
    /// A certificate file was rejected (it is not served).
    Rejected,
    /// A reload was refused (the previous configuration keeps serving).
    ReloadRefused,
}

fn all_events() -> Vec<NotifyEvent> {
    vec![
        NotifyEvent::Expiring,
        NotifyEvent::Rejected,
        NotifyEvent::ReloadRefused,
    ]
}
