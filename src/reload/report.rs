//! What a load or reload did: its outcome, what changed, and every message, for the log, the
//! metrics, `/status` and `POST /reload`'s answer.

use super::diff::Diff;
use crate::snapshot::Snapshot;

/// How a load or reload ended, as `menshen_reloads_total{result}` counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Outcome {
    /// Everything the files say serves.
    #[default]
    Ok,
    /// Applied, but something was left out (a rejected certificate file, a backend hostname
    /// that kept its last good addresses): see the messages.
    Partial,
    /// Nothing applied: the previous snapshot keeps serving.
    Rejected,
}

impl Outcome {
    /// Every outcome, for counters that must exist from the first scrape.
    pub const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::Partial, Outcome::Rejected];

    /// The metric label and JSON value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Partial => "partial",
            Outcome::Rejected => "rejected",
        }
    }

    /// What an operator reads on `/status`.
    pub fn describe(self) -> &'static str {
        match self {
            Outcome::Ok => "applied",
            Outcome::Partial => "applied in part: see the messages below for what was left out",
            Outcome::Rejected => "refused: the previous configuration keeps serving",
        }
    }
}

/// What one load or reload did, for logs, metrics, `/status` and the admin endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Ok, partial or rejected.
    pub result: Outcome,
    /// What asked for it: `start`, `file change`, `SIGHUP`, `API`.
    pub trigger: String,
    /// Seconds since the epoch when it finished.
    pub at: i64,
    /// What serves now (when applied) or why nothing changed.
    pub summary: String,
    /// What differs from the previous snapshot (empty at start and when refused).
    pub diff: Diff,
    /// Every problem: why it was refused, or what was left out of what applied.
    pub errors: Vec<String>,
}

impl ReloadReport {
    /// Whether the new snapshot serves.
    pub fn applied(&self) -> bool {
        self.result != Outcome::Rejected
    }

    /// The report as one JSON object (`POST /reload`, `/status.json`).
    pub fn to_json(&self) -> String {
        use crate::observe::access_log::push_json_str;
        let list = |out: &mut String, items: &[String]| {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(out, item);
            }
            out.push(']');
        };
        let mut out = format!(
            "{{\"applied\":{},\"result\":\"{}\",\"at\":{},\"trigger\":",
            self.applied(),
            self.result.label(),
            self.at
        );
        push_json_str(&mut out, &self.trigger);
        out.push_str(",\"summary\":");
        push_json_str(&mut out, &self.summary);
        out.push_str(",\"changes\":");
        list(&mut out, &self.diff.lines());
        out.push_str(",\"diff\":");
        self.diff.push_json(&mut out);
        out.push_str(",\"errors\":");
        list(&mut out, &self.errors);
        out.push('}');
        out
    }
}

/// One line on what a snapshot serves.
pub fn summary(s: &Snapshot) -> String {
    let backends: usize = s
        .upstreams
        .values()
        .map(|u| u.settings.backends.len())
        .sum();
    format!(
        "configuration loaded: {} listeners, {} sites, {} certificates ({} rejected), \
         {} upstreams with {} backends",
        s.listeners().len(),
        s.router.sites().len(),
        s.certs.certs().len(),
        s.cert_errors.len(),
        s.upstreams.len(),
        backends
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_json_names_result_trigger_and_every_message() {
        let report = ReloadReport {
            result: Outcome::Partial,
            trigger: "SIGHUP".into(),
            at: 42,
            summary: "s".into(),
            diff: Diff {
                certificates: vec![super::super::diff::CertChange::Added {
                    file: "a".into(),
                    serial: "01".into(),
                }],
                ..Diff::default()
            },
            errors: vec!["live/b.crt: \"bad\"".into()],
        };
        let v: serde_json::Value = serde_json::from_str(&report.to_json()).expect("JSON");
        assert_eq!(v["applied"], true);
        assert_eq!(v["result"], "partial");
        assert_eq!(v["trigger"], "SIGHUP");
        assert_eq!(v["at"], 42);
        assert_eq!(v["errors"][0], "live/b.crt: \"bad\"");
        assert_eq!(v["changes"][0], "certificate added: a (serial 01)");
        assert_eq!(v["diff"]["certificates"]["added"][0], "a");
        assert_eq!(v["diff"]["sites"]["changed"], serde_json::json!([]));
    }
}
