//! Watch -> build a whole new snapshot -> validate -> swap.
//!
//! Three triggers lead to [`Reloader::reload`]: file events (notify, debounced) on the config
//! file's directory and the certificate and approved-CA directories; a content-hash poll that
//! catches what watchers miss (Kubernetes swaps a `..data` symlink; single-file mounts); and
//! SIGHUP. A config that fails to compile leaves the serving snapshot untouched.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::config::file::ListenerSection;
use crate::config::load;
use crate::snapshot::{SharedSnapshot, Snapshot};
use crate::tls::files_in;

/// What one reload did, for logs and the admin endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// The new snapshot is serving.
    pub applied: bool,
    /// What serves now (on success) or why nothing changed.
    pub summary: String,
    /// What differs from the previous snapshot, one line each.
    pub changes: Vec<String>,
    /// Errors that kept the old snapshot (config) or a file's last good version (certificates).
    pub errors: Vec<String>,
}

/// Reloads the snapshot from disk on demand and from the watchers it starts.
pub struct Reloader {
    state: SharedSnapshot,
    config_path: PathBuf,
    running_listeners: Vec<ListenerSection>,
    rt: Handle,
    serial: tokio::sync::Mutex<()>,
    fingerprint: Mutex<[u8; 32]>,
    last: Mutex<Option<(i64, ReloadReport)>>,
}

impl Reloader {
    /// A reloader for the snapshot in `state`, which was loaded from its `config_path`.
    pub fn new(state: SharedSnapshot, rt: Handle) -> Arc<Self> {
        let current = state.load_full();
        let reloader = Arc::new(Self {
            config_path: current.config_path.clone(),
            running_listeners: current.listeners().to_vec(),
            state,
            rt,
            serial: tokio::sync::Mutex::new(()),
            fingerprint: Mutex::new([0; 32]),
            last: Mutex::new(None),
        });
        let fp = fingerprint(&current);
        if let Ok(mut f) = reloader.fingerprint.lock() {
            *f = fp;
        }
        reloader
    }

    /// The last reload's time (seconds since the epoch) and outcome.
    pub fn last(&self) -> Option<(i64, ReloadReport)> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    /// Builds a new snapshot from disk and swaps it in if it is valid.
    pub async fn reload(&self, trigger: &str) -> ReloadReport {
        let report = self.reload_inner(trigger).await;
        let m = crate::observe::metrics::metrics();
        let result = if report.applied { "ok" } else { "rejected" };
        m.reloads.with_label_values(&[result]).inc();
        let now = crate::tls::cert::unix_now();
        if report.applied {
            m.last_reload.set(now as f64);
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some((now, report.clone()));
        }
        report
    }

    async fn reload_inner(&self, trigger: &str) -> ReloadReport {
        let _one_at_a_time = self.serial.lock().await;
        let previous = self.state.load_full();
        let fp = fingerprint(&previous);
        if let Ok(mut f) = self.fingerprint.lock() {
            *f = fp;
        }
        let path = self.config_path.clone();
        let prev = previous.clone();
        let built = tokio::task::spawn_blocking(move || load(&path, Some(&prev))).await;
        let loaded = match built {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(errors)) => {
                for e in &errors {
                    tracing::error!(
                        trigger,
                        "reload refused, the previous configuration keeps serving: {e}"
                    );
                }
                return ReloadReport {
                    applied: false,
                    summary: format!(
                        "{} error(s); the previous configuration keeps serving",
                        errors.len()
                    ),
                    changes: Vec::new(),
                    errors: errors.iter().map(ToString::to_string).collect(),
                };
            }
            Err(join) => {
                tracing::error!(trigger, "reload task failed: {join}");
                return ReloadReport {
                    applied: false,
                    summary: "reload task failed".into(),
                    changes: Vec::new(),
                    errors: vec![join.to_string()],
                };
            }
        };
        let snapshot = loaded.snapshot;
        for e in &snapshot.cert_errors {
            let kept = e
                .file()
                .is_some_and(|f| loaded.kept_previous.iter().any(|k| k == f));
            let outcome = if kept {
                "its last good version keeps serving"
            } else {
                "it is not served"
            };
            tracing::error!(trigger, "certificate rejected, {outcome}: {e}");
        }
        if snapshot.listeners() != self.running_listeners.as_slice() {
            tracing::warn!(
                "listener changes take effect only after a restart (or binary upgrade); \
                 the current listeners keep running"
            );
        }
        snapshot.discover_upstreams().await;
        snapshot.start_background(&self.rt);
        snapshot.warn_expiring();
        let errors = snapshot
            .cert_errors
            .iter()
            .map(ToString::to_string)
            .collect();
        let summary = summary(&snapshot);
        let changes = changes(&previous, &snapshot);
        for change in &changes {
            tracing::info!(trigger, "{change}");
        }
        self.state.store(Arc::new(snapshot));
        tracing::info!(trigger, "{summary}");
        ReloadReport {
            applied: true,
            summary,
            changes,
            errors,
        }
    }

    /// Reloads when the watched files' content differs from the last load.
    async fn reload_if_changed(&self, trigger: &str) {
        let current = fingerprint(&self.state.load());
        let last = self.fingerprint.lock().map(|f| *f).unwrap_or([0; 32]);
        if current != last {
            self.reload(trigger).await;
        }
    }

    /// Starts the watcher, the poller and the SIGHUP handler on the control runtime.
    pub fn start(self: &Arc<Self>) {
        let reload = &self.state.load().file.reload;
        let poll = Duration::from_millis(reload.poll_interval_ms.max(100));
        let debounce = Duration::from_millis(reload.debounce_ms);
        if reload.watch {
            let this = self.clone();
            self.rt.spawn(async move { this.watch(debounce).await });
        }
        let this = self.clone();
        self.rt.spawn(async move {
            let mut tick = tokio::time::interval(poll);
            loop {
                tick.tick().await;
                this.reload_if_changed("poll").await;
            }
        });
        let this = self.clone();
        self.rt.spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                tracing::error!("cannot install the SIGHUP handler; reload by file change only");
                return;
            };
            while hup.recv().await.is_some() {
                this.reload("SIGHUP").await;
            }
        });
        let this = self.clone();
        self.rt.spawn(async move {
            let day = Duration::from_secs(86_400);
            loop {
                tokio::time::sleep(day).await;
                this.state.load().warn_expiring();
            }
        });
    }

    async fn watch(self: Arc<Self>, debounce: Duration) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                let _ = tx.send(());
            }
        });
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("file watcher unavailable ({e}); relying on polling");
                return;
            }
        };
        let mut watched: Vec<PathBuf> = Vec::new();
        loop {
            let wanted = watch_dirs(&self.state.load());
            if wanted != watched {
                for dir in &watched {
                    let _ = watcher.unwatch(dir);
                }
                for dir in &wanted {
                    if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                        tracing::warn!(dir = %dir.display(), "cannot watch ({e}); polling covers it");
                    }
                }
                watched = wanted;
            }
            if rx.recv().await.is_none() {
                return;
            }
            tokio::time::sleep(debounce).await;
            while rx.try_recv().is_ok() {}
            self.reload_if_changed("file change").await;
        }
    }
}

/// The directories whose changes matter: the config file's, and every TLS path.
fn watch_dirs(s: &Snapshot) -> Vec<PathBuf> {
    let mut dirs = vec![parent(&s.config_path)];
    for p in s.cert_sources.paths().iter().chain(&s.approved_paths) {
        dirs.push(if p.is_dir() { p.clone() } else { parent(p) });
    }
    dirs.sort();
    dirs.dedup();
    dirs
}

fn parent(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// SHA-256 over the config file and every file in the TLS paths (names and contents).
pub fn fingerprint(s: &Snapshot) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut add = |p: &Path| {
        ctx.update(p.as_os_str().as_encoded_bytes());
        ctx.update(&std::fs::read(p).unwrap_or_default());
    };
    add(&s.config_path);
    for p in s.cert_sources.paths().iter().chain(&s.approved_paths) {
        match files_in(p) {
            Ok(files) => files.iter().for_each(|f| add(f)),
            Err(_) => add(p),
        }
    }
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
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
