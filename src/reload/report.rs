//! What a load or reload did: its outcome, what changed, and every message, for the log, the
//! metrics, `/status` and `POST /reload`'s answer.

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
    /// What differs from the previous snapshot, one line each.
    pub changes: Vec<String>,
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
        list(&mut out, &self.changes);
        out.push_str(",\"errors\":");
        list(&mut out, &self.errors);
        out.push('}');
        out
    }
}

/// What `new` serves differently from `old`: certificates, sites, upstreams.
pub fn changes(old: &Snapshot, new: &Snapshot) -> Vec<String> {
    use std::collections::BTreeMap;
    let mut out = Vec::new();
    let certs = |s: &Snapshot| -> BTreeMap<String, ([u8; 32], String)> {
        s.certs
            .certs()
            .iter()
            .map(|c| {
                (
                    c.info.file.display().to_string(),
                    (c.content_hash, c.info.serial.clone()),
                )
            })
            .collect()
    };
    let (before, after) = (certs(old), certs(new));
    for (file, (hash, serial)) in &after {
        match before.get(file) {
            None => out.push(format!("certificate added: {file} (serial {serial})")),
            Some((old_hash, old_serial)) if old_hash != hash => out.push(format!(
                "certificate replaced: {file} (serial {old_serial} -> {serial})"
            )),
            Some(_) => {}
        }
    }
    for file in before.keys().filter(|f| !after.contains_key(*f)) {
        out.push(format!("certificate removed: {file}"));
    }
    let sites = |s: &Snapshot| -> BTreeMap<String, String> {
        s.file
            .sites
            .iter()
            .map(|site| (site.name.clone(), format!("{site:?}")))
            .collect()
    };
    diff_named(&mut out, "site", &sites(old), &sites(new));
    let upstreams = |s: &Snapshot| -> BTreeMap<String, String> {
        s.file
            .upstreams
            .iter()
            .map(|u| (u.name.clone(), format!("{u:?}")))
            .collect()
    };
    diff_named(&mut out, "upstream", &upstreams(old), &upstreams(new));
    if old.file.policy != new.file.policy {
        out.push("policy changed".into());
    }
    out
}

fn diff_named(
    out: &mut Vec<String>,
    what: &str,
    old: &std::collections::BTreeMap<String, String>,
    new: &std::collections::BTreeMap<String, String>,
) {
    for (name, body) in new {
        match old.get(name) {
            None => out.push(format!("{what} added: {name}")),
            Some(before) if before != body => out.push(format!("{what} changed: {name}")),
            Some(_) => {}
        }
    }
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        out.push(format!("{what} removed: {name}"));
    }
}

/// One line on what a snapshot serves.
pub fn summary(s: &Snapshot) -> String {
    let backends: usize = s.upstreams.values().map(|u| u.section.backends.len()).sum();
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
            changes: vec!["certificate added: a".into()],
            errors: vec!["live/b.crt: \"bad\"".into()],
        };
        let v: serde_json::Value = serde_json::from_str(&report.to_json()).expect("JSON");
        assert_eq!(v["applied"], true);
        assert_eq!(v["result"], "partial");
        assert_eq!(v["trigger"], "SIGHUP");
        assert_eq!(v["at"], 42);
        assert_eq!(v["errors"][0], "live/b.crt: \"bad\"");
        assert_eq!(v["changes"][0], "certificate added: a");
    }
}
