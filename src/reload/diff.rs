//! What a reload changed, typed: listeners, sites, routes, upstreams, rules and certificates
//! added, removed or changed, computed from the two runtime models (never from the file).
//! `POST /reload`'s answer, `/status` and the reload's log line show it.

use std::collections::BTreeMap;
use std::fmt;

use crate::observe::access_log::push_json_str;
use crate::route::router::Route;
use crate::route::settings::UpstreamSettings;
use crate::route::Site;
use crate::snapshot::Snapshot;

/// Names of things of one kind that were added, removed or changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// New in the second snapshot.
    pub added: Vec<String>,
    /// Gone from the second snapshot.
    pub removed: Vec<String>,
    /// In both, with different settings.
    pub changed: Vec<String>,
}

impl Changes {
    /// Compares two maps by key, then value.
    fn of<T: PartialEq>(old: &BTreeMap<String, T>, new: &BTreeMap<String, T>) -> Self {
        let mut out = Changes::default();
        for (name, value) in new {
            match old.get(name) {
                None => out.added.push(name.clone()),
                Some(before) if before != value => out.changed.push(name.clone()),
                Some(_) => {}
            }
        }
        out.removed = old
            .keys()
            .filter(|n| !new.contains_key(*n))
            .cloned()
            .collect();
        out
    }

    /// Nothing added, removed or changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    fn lines(&self, what: &str, out: &mut Vec<String>) {
        let kinds = [
            ("added", &self.added),
            ("removed", &self.removed),
            ("changed", &self.changed),
        ];
        for (verb, names) in kinds {
            out.extend(names.iter().map(|n| format!("{what} {verb}: {n}")));
        }
    }

    fn push_json(&self, out: &mut String) {
        let kinds = [
            ("added", &self.added),
            ("removed", &self.removed),
            ("changed", &self.changed),
        ];
        out.push('{');
        for (i, (verb, names)) in kinds.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!("\"{verb}\":["));
            for (j, name) in names.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                push_json_str(out, name);
            }
            out.push(']');
        }
        out.push('}');
    }
}

/// A served certificate file that came, went or was replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertChange {
    /// A file served now and not before.
    Added {
        /// The certificate file.
        file: String,
        /// Its serial number.
        serial: String,
    },
    /// A file whose content changed.
    Replaced {
        /// The certificate file.
        file: String,
        /// The serial served before.
        old_serial: String,
        /// The serial served now.
        serial: String,
    },
    /// A file no longer served.
    Removed {
        /// The certificate file.
        file: String,
    },
}

impl fmt::Display for CertChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertChange::Added { file, serial } => {
                write!(f, "certificate added: {file} (serial {serial})")
            }
            CertChange::Replaced {
                file,
                old_serial,
                serial,
            } => write!(
                f,
                "certificate replaced: {file} (serial {old_serial} -> {serial})"
            ),
            CertChange::Removed { file } => write!(f, "certificate removed: {file}"),
        }
    }
}

/// Everything a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Listeners by name (a change applies at the next start).
    pub listeners: Changes,
    /// Sites by name: hosts, policy or any route.
    pub sites: Changes,
    /// Routes of sites in both snapshots, as `site prefix` (with `[METHODS]` when restricted).
    pub routes: Changes,
    /// Upstreams by name: backends, balancing, TLS, timeouts, health check.
    pub upstreams: Changes,
    /// The policy's rules and connection settings by name (`rate`, `takedown`, `timeouts`).
    pub rules: Changes,
    /// Served certificate files.
    pub certificates: Vec<CertChange>,
}

impl Diff {
    /// What `new` serves differently from `old`.
    pub fn between(old: &Snapshot, new: &Snapshot) -> Self {
        let listeners = |s: &Snapshot| {
            s.listeners
                .iter()
                .map(|l| (l.name.clone(), l.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        fn sites(s: &Snapshot) -> BTreeMap<String, &crate::route::Site> {
            s.router
                .sites()
                .iter()
                .map(|site| (site.name.clone(), site))
                .collect()
        }
        fn upstreams(s: &Snapshot) -> BTreeMap<String, &UpstreamSettings> {
            s.upstreams
                .iter()
                .map(|(name, up)| (name.clone(), &up.settings))
                .collect()
        }
        Diff {
            listeners: Changes::of(&listeners(old), &listeners(new)),
            sites: Changes::of(&sites(old), &sites(new)),
            routes: routes(old, new),
            upstreams: Changes::of(&upstreams(old), &upstreams(new)),
            rules: Changes {
                changed: old
                    .policy
                    .changed(&new.policy)
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
                ..Changes::default()
            },
            certificates: certificates(old, new),
        }
    }

    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty()
            && [
                &self.listeners,
                &self.sites,
                &self.routes,
                &self.upstreams,
                &self.rules,
            ]
            .iter()
            .all(|c| c.is_empty())
    }

    /// One line per change, for the log and the status page.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self.certificates.iter().map(ToString::to_string).collect();
        self.listeners.lines("listener", &mut out);
        self.sites.lines("site", &mut out);
        self.routes.lines("route", &mut out);
        self.upstreams.lines("upstream", &mut out);
        self.rules.lines("rule", &mut out);
        out
    }

    /// The diff as one JSON object: `{"sites": {"added": [...], "removed": [...], "changed":
    /// [...]}, ...}`, certificates by file.
    pub fn push_json(&self, out: &mut String) {
        let mut certs = Changes::default();
        for c in &self.certificates {
            match c {
                CertChange::Added { file, .. } => certs.added.push(file.clone()),
                CertChange::Replaced { file, .. } => certs.changed.push(file.clone()),
                CertChange::Removed { file } => certs.removed.push(file.clone()),
            }
        }
        let kinds = [
            ("listeners", &self.listeners),
            ("sites", &self.sites),
            ("routes", &self.routes),
            ("upstreams", &self.upstreams),
            ("rules", &self.rules),
            ("certificates", &certs),
        ];
        out.push('{');
        for (i, (what, changes)) in kinds.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!("\"{what}\":"));
            changes.push_json(out);
        }
        out.push('}');
    }
}

/// `site added: blog; route changed: shop /api/` (or `no changes`), for the reload's log line.
impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.is_empty() {
            true => f.write_str("no changes"),
            false => f.write_str(&self.lines().join("; ")),
        }
    }
}

/// A route's name in a diff: its site, prefix and (when restricted) methods.
fn route_name(site: &str, route: &Route) -> String {
    match &route.methods {
        None => format!("{site} {}", route.prefix),
        Some(methods) => {
            let list: Vec<&str> = methods.iter().map(http::Method::as_str).collect();
            format!("{site} {} [{}]", route.prefix, list.join(", "))
        }
    }
}

/// The routes of the sites both snapshots have (an added or removed site's routes come and go
/// with it).
fn routes(old: &Snapshot, new: &Snapshot) -> Changes {
    let mut out = Changes::default();
    for site in new.router.sites() {
        let Some(before) = old.router.sites().iter().find(|s| s.name == site.name) else {
            continue;
        };
        fn map(s: &Site) -> BTreeMap<String, &Route> {
            s.routes
                .iter()
                .map(|r| (route_name(&s.name, r), r))
                .collect()
        }
        let c = Changes::of(&map(before), &map(site));
        out.added.extend(c.added);
        out.removed.extend(c.removed);
        out.changed.extend(c.changed);
    }
    out
}

fn certificates(old: &Snapshot, new: &Snapshot) -> Vec<CertChange> {
    let served = |s: &Snapshot| -> BTreeMap<String, ([u8; 32], String)> {
        s.certs
            .certs()
            .iter()
            .map(|c| {
                let file = c.info.file.display().to_string();
                (file, (c.content_hash, c.info.serial.clone()))
            })
            .collect()
    };
    let (before, after) = (served(old), served(new));
    let mut out = Vec::new();
    for (file, (hash, serial)) in &after {
        match before.get(file) {
            None => out.push(CertChange::Added {
                file: file.clone(),
                serial: serial.clone(),
            }),
            Some((old_hash, old_serial)) if old_hash != hash => out.push(CertChange::Replaced {
                file: file.clone(),
                old_serial: old_serial.clone(),
                serial: serial.clone(),
            }),
            Some(_) => {}
        }
    }
    for file in before.keys().filter(|f| !after.contains_key(*f)) {
        out.push(CertChange::Removed { file: file.clone() });
    }
    out
}
