//! Notifications: WeCom, DingTalk and Feishu group robots and a generic JSON webhook, told when
//! a certificate enters its expiry warning window, when one is rejected, and when a reload is
//! refused.
//!
//! The process already logs each of these (`snapshot.rs`, `reload.rs`, `main.rs`); `layer.rs`
//! picks them out of the log as they happen and hands them, without waiting, to one background
//! thread here. That thread batches what arrives close together, sends at most one message per
//! webhook per `notify.min_interval` (what comes meanwhile goes in the next one), and
//! counts what failed. `send.rs` writes the HTTP request; a slow or dead robot delays only this
//! thread.

mod layer;
mod send;
mod settings;

use std::collections::HashSet;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use prometheus::{register_int_counter, register_int_counter_vec, IntCounter, IntCounterVec};

pub use layer::NotifyLayer;
pub use settings::{NotifyConfig, NotifyEvent, Webhook, WebhookKind};

/// Notices waiting for the sender; beyond this they are dropped and counted.
const QUEUE: usize = 1024;
/// How long the sender waits for more notices after the first, to send them as one message.
const GATHER: Duration = Duration::from_millis(500);

/// One thing worth a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// What happened.
    pub event: NotifyEvent,
    /// One line for the message.
    pub text: String,
    /// Identifies a certificate's expiry notice, sent once per process.
    pub once: Option<String>,
}

/// `menshen_notifications_sent_total{kind}`, `…_failed_total{kind}`, `…_dropped_total`.
pub struct NotifyMetrics {
    /// Messages a robot accepted.
    pub sent: IntCounterVec,
    /// Messages that could not be delivered (connect, TLS, HTTP status, robot error code).
    pub failed: IntCounterVec,
    /// Notices dropped because the sender fell behind.
    pub dropped: IntCounter,
}

/// The notification metrics, registered on first use.
pub fn metrics() -> &'static NotifyMetrics {
    static METRICS: OnceLock<NotifyMetrics> = OnceLock::new();
    const DEFINED: &str = "static metric definition";
    METRICS.get_or_init(|| NotifyMetrics {
        sent: register_int_counter_vec!(
            "menshen_notifications_sent_total",
            "Notification messages a webhook accepted, by kind",
            &["kind"]
        )
        .expect(DEFINED),
        failed: register_int_counter_vec!(
            "menshen_notifications_failed_total",
            "Notification messages that could not be delivered, by kind",
            &["kind"]
        )
        .expect(DEFINED),
        dropped: register_int_counter!(
            "menshen_notifications_dropped_total",
            "Notices dropped because the notification sender fell behind"
        )
        .expect(DEFINED),
    })
}

/// The label of a webhook kind.
pub fn kind_label(kind: WebhookKind) -> &'static str {
    match kind {
        WebhookKind::Wecom => "wecom",
        WebhookKind::Dingtalk => "dingtalk",
        WebhookKind::Feishu => "feishu",
        WebhookKind::Json => "json",
    }
}

/// Starts the sender for `config`; the layer that feeds it. `None` without webhooks.
pub fn start(config: &NotifyConfig) -> Option<NotifyLayer> {
    if config.webhooks.is_empty() {
        return None;
    }
    let m = metrics();
    for w in &config.webhooks {
        m.sent.with_label_values(&[kind_label(w.kind)]);
        m.failed.with_label_values(&[kind_label(w.kind)]);
    }
    let (tx, rx) = sync_channel(QUEUE);
    let hooks = config.webhooks.clone();
    let interval = config.min_interval;
    let spawned = std::thread::Builder::new()
        .name("menshen-notify".into())
        .spawn(move || run(rx, hooks, interval));
    spawned.ok().map(|_| NotifyLayer::new(tx))
}

/// One webhook's state: what waits to be sent, and when it last was.
struct Outbox {
    hook: Webhook,
    waiting: Vec<Notice>,
    last: Option<Instant>,
}

fn run(rx: Receiver<Notice>, hooks: Vec<Webhook>, interval: Duration) {
    let mut boxes: Vec<Outbox> = hooks
        .into_iter()
        .map(|hook| Outbox {
            hook,
            waiting: Vec::new(),
            last: None,
        })
        .collect();
    let mut once: HashSet<String> = HashSet::new();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    loop {
        // Sleep until something arrives, or until a held message may go.
        let due = boxes
            .iter()
            .filter(|b| !b.waiting.is_empty())
            .filter_map(|b| {
                b.last
                    .map(|l| (l + interval).saturating_duration_since(Instant::now()))
            })
            .min();
        let first = match due {
            Some(wait) => rx.recv_timeout(wait),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let mut arrived = Vec::new();
        match first {
            Ok(n) => {
                arrived.push(n);
                let until = Instant::now() + GATHER;
                while let Ok(n) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                    arrived.push(n);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        for n in arrived {
            if let Some(key) = &n.once {
                if !once.insert(key.clone()) {
                    continue;
                }
            }
            for b in boxes
                .iter_mut()
                .filter(|b| b.hook.events.contains(&n.event))
            {
                if !b.waiting.contains(&n) {
                    b.waiting.push(n.clone());
                }
            }
        }
        for b in boxes.iter_mut() {
            let ready = b.last.is_none_or(|l| l.elapsed() >= interval);
            if b.waiting.is_empty() || !ready {
                continue;
            }
            let notices = std::mem::take(&mut b.waiting);
            b.last = Some(Instant::now());
            let label = kind_label(b.hook.kind);
            match send::post(&b.hook, &host, &notices) {
                Ok(()) => metrics().sent.with_label_values(&[label]).inc(),
                Err(e) => {
                    metrics().failed.with_label_values(&[label]).inc();
                    tracing::warn!(kind = label, "notification not delivered: {e}");
                }
            }
        }
    }
}

/// Why `url` cannot be a webhook's address, if it cannot.
pub fn check_url(url: &str) -> Result<(), String> {
    send::Target::parse(url).map(drop)
}
