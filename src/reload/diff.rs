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
    /// The policy's rules and connection settings by name (`rate`, `takedown`, `timeouts`),
    /// and the process-wide `error_pages`.
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
                    .chain((old.error_pages != new.error_pages).then_some("error_pages"))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain-HTTP config with `body` (upstreams, sites, policy), compiled.
    fn load(dir: &tempfile::TempDir, name: &str, body: &str) -> Snapshot {
        let path = dir.path().join(name);
        let text = format!(
            "[[listeners]]\nname = \"http\"\naddr = \"127.0.0.1:18080\"\n\
             [policy]\nrequire_icp = false\n{body}"
        );
        std::fs::write(&path, text).expect("write config");
        match crate::config::load(&path, None) {
            Ok(load) => load.snapshot,
            Err(errors) => panic!("config does not load: {errors:?}"),
        }
    }

    const UPSTREAMS: &str = "[[upstreams]]\nname = \"api\"\nbackends = [\"127.0.0.1:9001\"]\n\
                             [[upstreams]]\nname = \"web\"\nbackends = [\"127.0.0.1:9002\"]\n";

    fn site(name: &str, routes: &str) -> String {
        format!("[[sites]]\nname = \"{name}\"\nhosts = [\"{name}.example.cn\"]\n{routes}")
    }

    fn route(prefix: &str, rest: &str) -> String {
        format!("[[sites.routes]]\nprefix = \"{prefix}\"\n{rest}\n")
    }

    /// The upstreams and one site, shop, all to `web`.
    fn shop_to_web() -> String {
        format!(
            "{UPSTREAMS}{}",
            site("shop", &route("/", "upstream = \"web\""))
        )
    }

    #[test]
    fn the_same_config_twice_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = shop_to_web();
        let (a, b) = (load(&dir, "a.toml", &body), load(&dir, "b.toml", &body));
        let diff = Diff::between(&a, &b);
        assert!(diff.is_empty(), "{diff:?}");
        assert_eq!(diff.to_string(), "no changes");
    }

    #[test]
    fn routes_are_named_by_site_prefix_and_methods_and_upstreams_by_their_settings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let before = format!(
            "{UPSTREAMS}{}",
            site(
                "shop",
                &(route("/", "upstream = \"web\"")
                    + &route("/api/", "upstream = \"api\"\nmethods = [\"GET\", \"POST\"]")
                    + &route("/old/", "respond = { body = \"old\" }"))
            )
        );
        let after = format!(
            "{}{}",
            UPSTREAMS.replace("127.0.0.1:9001\"]", "127.0.0.1:9001\", \"127.0.0.1:9003\"]"),
            site(
                "shop",
                &(route("/", "upstream = \"web\"\nstrip_prefix = true")
                    + &route("/api/", "upstream = \"api\"\nmethods = [\"GET\", \"POST\"]")
                    + &route("/new/", "respond = { body = \"new\" }"))
            )
        );
        let diff = Diff::between(
            &load(&dir, "a.toml", &before),
            &load(&dir, "b.toml", &after),
        );
        assert_eq!(diff.sites.changed, ["shop"]);
        assert_eq!(diff.routes.added, ["shop /new/"]);
        assert_eq!(diff.routes.removed, ["shop /old/"]);
        assert_eq!(
            diff.routes.changed,
            ["shop /"],
            "the route to `api` is the same route"
        );
        assert_eq!(diff.upstreams.changed, ["api"], "a backend more");
        assert!(diff.upstreams.added.is_empty() && diff.upstreams.removed.is_empty());
        assert!(diff.rules.is_empty() && diff.listeners.is_empty());
        assert!(diff
            .to_string()
            .contains("route removed: shop /old/; route changed: shop /"));

        let methods = format!(
            "{UPSTREAMS}{}",
            site(
                "shop",
                &route("/api/", "upstream = \"api\"\nmethods = [\"GET\", \"POST\"]")
            )
        );
        let diff = Diff::between(
            &load(&dir, "c.toml", &methods),
            &load(&dir, "d.toml", &methods.replace(", \"POST\"", "")),
        );
        assert_eq!(diff.routes.added, ["shop /api/ [GET]"]);
        assert_eq!(diff.routes.removed, ["shop /api/ [GET, POST]"]);
    }

    #[test]
    fn a_site_policy_a_rule_and_a_listener_are_changes_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = shop_to_web();
        let tightened = body.replace(
            "hosts = [\"shop.example.cn\"]",
            "hosts = [\"shop.example.cn\"]\ndeny = [\"10.0.0.0/8\"]",
        ) + "[[policy.takedowns]]\nid = \"t1\"\nhost = \"shop.example.cn\"\n\
             prefix = \"/leak/\"\n";
        let before = load(&dir, "a.toml", &body);
        let after = load(&dir, "b.toml", &tightened);
        let diff = Diff::between(&before, &after);
        assert_eq!(diff.sites.changed, ["shop"], "its deny list");
        assert!(diff.routes.is_empty(), "no route changed: {diff:?}");
        assert_eq!(diff.rules.changed, ["takedown"]);

        let mut moved = load(&dir, "c.toml", &body);
        moved.listeners[0].addr = "127.0.0.1:18081".parse().expect("addr");
        let diff = Diff::between(&before, &moved);
        assert_eq!(diff.listeners.changed, ["http"]);
        assert!(diff.sites.is_empty() && diff.rules.is_empty());

        let paged = body.clone() + "[[error_pages]]\nstatus = [502]\ntemplate = \"down\"\n";
        let diff = Diff::between(&before, &load(&dir, "d.toml", &paged));
        assert_eq!(
            diff.rules.changed,
            ["error_pages"],
            "the process-wide pages"
        );
        let site_paged = body.replace(
            "hosts = [\"shop.example.cn\"]",
            "hosts = [\"shop.example.cn\"]\nerror_pages = [{ status = [451], template = \"x\" }]",
        );
        let diff = Diff::between(&before, &load(&dir, "e.toml", &site_paged));
        assert_eq!(diff.sites.changed, ["shop"], "a site's pages");
    }

    #[test]
    fn the_json_lists_every_kind_with_its_three_lists() {
        let diff = Diff {
            sites: Changes {
                added: vec!["blog".into()],
                ..Changes::default()
            },
            certificates: vec![CertChange::Replaced {
                file: "live/shop.crt".into(),
                old_serial: "01".into(),
                serial: "02".into(),
            }],
            ..Diff::default()
        };
        let mut out = String::new();
        diff.push_json(&mut out);
        let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(v["sites"]["added"][0], "blog");
        assert_eq!(v["certificates"]["changed"][0], "live/shop.crt");
        for kind in ["listeners", "routes", "upstreams", "rules"] {
            for list in ["added", "removed", "changed"] {
                assert_eq!(v[kind][list], serde_json::json!([]), "{kind}.{list}");
            }
        }
        assert_eq!(
            diff.lines(),
            [
                "certificate replaced: live/shop.crt (serial 01 -> 02)",
                "site added: blog"
            ]
        );
    }
}
