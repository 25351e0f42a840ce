//! `[notify]` into the notifier's [`NotifyConfig`].

use super::file::{NotifyEvent, NotifySection, WebhookKind};
use super::Errors;
use crate::observe::notify::{self, NotifyConfig, Webhook};

/// The webhooks, each address and event list checked.
pub(super) fn compile(section: &NotifySection, errors: &mut Errors<'_>) -> NotifyConfig {
    for (key, message) in check(section) {
        errors.invalid(key, message);
    }
    NotifyConfig {
        min_interval: section.min_interval,
        webhooks: section
            .webhooks
            .iter()
            .map(|w| Webhook {
                kind: match w.kind {
                    WebhookKind::Wecom => notify::WebhookKind::Wecom,
                    WebhookKind::Dingtalk => notify::WebhookKind::Dingtalk,
                    WebhookKind::Feishu => notify::WebhookKind::Feishu,
                    WebhookKind::Json => notify::WebhookKind::Json,
                },
                url: w.url.clone(),
                events: w.events.iter().map(|e| event(*e)).collect(),
            })
            .collect(),
    }
}

fn event(e: NotifyEvent) -> notify::NotifyEvent {
    match e {
        NotifyEvent::Expiring => notify::NotifyEvent::Expiring,
        NotifyEvent::Rejected => notify::NotifyEvent::Rejected,
        NotifyEvent::ReloadRefused => notify::NotifyEvent::ReloadRefused,
    }
}

/// Every problem of `[notify]` as (key, message).
fn check(section: &NotifySection) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, w) in section.webhooks.iter().enumerate() {
        if let Err(e) = notify::check_url(&w.url) {
            out.push((format!("notify.webhooks[{i}].url"), e));
        }
        if w.events.is_empty() {
            out.push((
                format!("notify.webhooks[{i}].events"),
                "is empty: list some of \"expiring\", \"rejected\", \"reload_refused\", or \
                 leave it out for all"
                    .into(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_bad_address_and_an_empty_event_list_are_config_errors() {
        let section: NotifySection = toml::from_str(
            "[[webhooks]]\nkind = \"wecom\"\nurl = \"qyapi.weixin.qq.com/x\"\nevents = []\n",
        )
        .expect("schema");
        assert_eq!(section.min_interval, Duration::from_secs(60));
        assert_eq!(
            check(&section),
            [
                (
                    "notify.webhooks[0].url".to_owned(),
                    "\"qyapi.weixin.qq.com/x\" is not an http:// or https:// address (copy the \
                     robot's webhook address)"
                        .to_owned()
                ),
                (
                    "notify.webhooks[0].events".to_owned(),
                    "is empty: list some of \"expiring\", \"rejected\", \"reload_refused\", or \
                     leave it out for all"
                        .to_owned()
                ),
            ]
        );
        let unknown =
            toml::from_str::<NotifySection>("[[webhooks]]\nkind = \"slack\"\nurl = \"x\"");
        assert!(unknown.is_err(), "only the known robots");
    }
}
