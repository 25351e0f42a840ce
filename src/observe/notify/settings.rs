//! What the notifier is told to do, compiled from `[notify]` by `config`.

use std::time::Duration;

/// Robot webhooks and how often each may be sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    /// Shortest time between two messages to one webhook.
    pub min_interval: Duration,
    /// Where messages go.
    pub webhooks: Vec<Webhook>,
}

/// One robot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Its message format.
    pub kind: WebhookKind,
    /// Its address (`http://` or `https://`, checked at load).
    pub url: String,
    /// What it is told about.
    pub events: Vec<NotifyEvent>,
}

/// A robot's message format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NotifyEvent {
    /// A certificate entered its expiry warning window.
    Expiring,
    /// A certificate file was rejected (it is not served).
    Rejected,
    /// A reload was refused (the previous configuration keeps serving).
    ReloadRefused,
}

impl NotifyEvent {
    const ALL: [NotifyEvent; 3] = [Self::Expiring, Self::Rejected, Self::ReloadRefused];

    /// The value of the `notify` field that marks a process log event as this notice.
    pub const fn mark(self) -> &'static str {
        match self {
            Self::Expiring => "expiring",
            Self::Rejected => "rejected",
            Self::ReloadRefused => "reload_refused",
        }
    }

    /// The notice a `notify` field's value marks, if any.
    pub fn marked(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.mark() == value)
    }
}
