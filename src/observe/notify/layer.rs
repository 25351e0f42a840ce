//! Picks the notices out of the process log: the events `snapshot.rs` (a certificate expires
//! soon), `reload.rs` and `main.rs` (a certificate rejected, a reload refused) write anyway,
//! each marked with a `notify` field (`expiring`, `rejected`, `reload_refused`) that says what it
//! is whatever its wording.
//! Handing one over never waits: a full queue drops it and counts it.

use std::fmt::Write;
use std::sync::mpsc::SyncSender;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use super::NotifyEvent;
use super::{metrics, Notice};

/// The tracing layer that feeds the notification sender.
pub struct NotifyLayer {
    tx: SyncSender<Notice>,
}

impl NotifyLayer {
    pub(super) fn new(tx: SyncSender<Notice>) -> Self {
        Self { tx }
    }
}

/// An event's message and its other fields, as `name=value`.
#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_owned(),
            name => self.rest.push((name, value.to_owned())),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        match field.name() {
            "message" => self.message = text,
            name => self.rest.push((name, text)),
        }
    }
}

impl Fields {
    fn get(&self, name: &str) -> &str {
        self.rest
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// The notice an event of the process log is, if any.
pub fn notice(level: Level, message: &str, fields: &[(&'static str, String)]) -> Option<Notice> {
    if level > Level::WARN {
        return None;
    }
    let f = Fields {
        message: message.to_owned(),
        rest: fields.to_vec(),
    };
    // The event's `notify` field says what it is (never its wording, which may change).
    let event = NotifyEvent::marked(f.get("notify").trim_matches('"'))?;
    if event == NotifyEvent::Expiring {
        let file = f.get("file");
        return Some(Notice {
            event: NotifyEvent::Expiring,
            text: format!(
                "certificate {file} ({}) expires in {} days, on {}: renew it (menshen certs \
                 request, then menshen certs install)",
                f.get("hosts"),
                f.get("days_left"),
                f.get("not_after")
            ),
            once: Some(format!("{file} {}", f.get("not_after"))),
        });
    }
    Some(Notice {
        event,
        text: f.message,
        once: None,
    })
}

impl<S: Subscriber> Layer<S> for NotifyLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Some(n) = notice(level, &fields.message, &fields.rest) {
            if self.tx.try_send(n).is_err() {
                metrics().dropped.inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_events_are_recognised_and_nothing_else() {
        let expiring = notice(
            Level::WARN,
            "certificate expires soon; renew it and drop the new files in place",
            &[
                ("notify", "expiring".into()),
                ("file", "live/shop.crt".into()),
                ("hosts", "[\"shop.example.cn\"]".into()),
                ("days_left", "9".into()),
                ("not_after", "2027-01-01".into()),
            ],
        )
        .expect("expiring");
        assert_eq!(expiring.event, NotifyEvent::Expiring);
        assert_eq!(
            expiring.text,
            "certificate live/shop.crt ([\"shop.example.cn\"]) expires in 9 days, on 2027-01-01: \
             renew it (menshen certs request, then menshen certs install)"
        );
        assert_eq!(expiring.once.as_deref(), Some("live/shop.crt 2027-01-01"));
        let rejected = notice(
            Level::ERROR,
            "certificate rejected, it is not served: x",
            &[("notify", "rejected".into())],
        );
        assert_eq!(rejected.map(|n| n.event), Some(NotifyEvent::Rejected));
        let refused = notice(
            Level::ERROR,
            "reload refused, the previous configuration…",
            &[("notify", "reload_refused".into())],
        );
        assert_eq!(refused.map(|n| n.event), Some(NotifyEvent::ReloadRefused));
        let marked = [("notify", "rejected".into())];
        assert!(notice(Level::INFO, "certificate rejected", &marked).is_none());
        assert!(
            notice(Level::ERROR, "certificate rejected, unmarked", &[]).is_none(),
            "the wording alone is not a notice"
        );
        assert!(notice(Level::ERROR, "upstream down", &[]).is_none());
    }
}
