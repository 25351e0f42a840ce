//! Watch -> build a whole new snapshot -> judge it against the serving one -> swap, or not.
//!
//! Three triggers lead to [`Reloader::reload`]: file events (notify, debounced) on the config
//! file's directory and the certificate and approved-CA directories; a content-hash poll that
//! catches what watchers miss (Kubernetes swaps a `..data` symlink; single-file mounts); and
//! SIGHUP (and `POST /reload`). A reload is all or nothing: the [`judge`] refuses a snapshot
//! that would break serving, and the serving one stays. Individually bad certificate files are
//! left out (their last good version serves on) and make the outcome "partial". The first load
//! is judged by the same rules ([`first_load`]).

mod diff;
mod digest;
pub mod judge;
mod report;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::config::load;
use crate::observe::metrics::metrics;
use crate::observe::notify::NotifyEvent;
use crate::snapshot::{Listener, SharedSnapshot, Snapshot};
use crate::tls::cert::unix_now;

pub use diff::{CertChange, Changes, Diff};
pub use digest::FileDigests;
pub use judge::Refusal;
pub use report::{summary, Outcome, ReloadReport};

/// Loads the first snapshot and judges it as a reload would be, without a serving one to keep:
/// refused for config errors, unreadable paths and TLS listeners with nothing to serve, and for
/// any rejected certificate file when `tls.strict = true`. Other rejected files are left out
/// (they are in `cert_errors`).
pub fn first_load(path: &Path) -> Result<Snapshot, Vec<Refusal>> {
    let snapshot = load(path, None)
        .map_err(|errors| errors.into_iter().map(Refusal::Config).collect::<Vec<_>>())?
        .snapshot;
    let strict = snapshot.cert_policy.strict;
    let refusals = judge::certificates(None, &snapshot);
    let strict_refuses = strict && !snapshot.cert_errors.is_empty();
    if refusals.is_empty() && !strict_refuses {
        return Ok(snapshot);
    }
    // Why each file was left out first, then why that stops the start.
    let configured = snapshot.cert_sources.configured();
    let mut all: Vec<Refusal> = snapshot
        .cert_errors
        .iter()
        .filter(|e| !e.file().is_some_and(|f| configured.contains(&f)))
        .map(|e| match strict {
            true => Refusal::Strict(e.clone()),
            false => Refusal::Certificate(e.clone()),
        })
        .collect();
    all.extend(refusals);
    Err(all)
}

/// Every problem of a snapshot that serves: rejected certificate files and backend hostnames
/// that resolved to nothing.
pub fn problems(s: &Snapshot) -> Vec<String> {
    let mut out: Vec<String> = s.cert_errors.iter().map(ToString::to_string).collect();
    out.extend(judge::unresolved(s));
    out
}

/// Reloads the snapshot from disk on demand and from the watchers it starts.
pub struct Reloader {
    state: SharedSnapshot,
    config_path: PathBuf,
    running_listeners: Vec<Listener>,
    rt: Handle,
    serial: tokio::sync::Mutex<()>,
    digests: FileDigests,
    fingerprint: Mutex<[u8; 32]>,
    waiting: digest::Waiting,
    last: Mutex<ReloadReport>,
    /// Where reloads not asked over the admin API (SIGHUP, file changes) are recorded.
    audit: std::sync::OnceLock<crate::observe::audit::Audit>,
}

impl Reloader {
    /// A reloader for the snapshot in `state`, which was loaded from its `config_path` (and
    /// whose upstreams were discovered). Its load is the first "reload" shown and counted.
    pub fn new(state: SharedSnapshot, rt: Handle) -> Arc<Self> {
        let current = state.load_full();
        let errors = problems(&current);
        let start = ReloadReport {
            result: if errors.is_empty() {
                Outcome::Ok
            } else {
                Outcome::Partial
            },
            trigger: "start".into(),
            at: current.loaded_at,
            summary: summary(&current),
            diff: Diff::default(),
            errors,
        };
        let m = metrics();
        for outcome in Outcome::ALL {
            m.reloads.with_label_values(&[outcome.label()]);
        }
        m.last_reload.set(current.loaded_at as f64);
        m.certs.rejected_files.set(current.cert_errors.len() as f64);
        let reloader = Arc::new(Self {
            config_path: current.config_path.clone(),
            running_listeners: current.listeners().to_vec(),
            state,
            rt,
            serial: tokio::sync::Mutex::new(()),
            digests: FileDigests::default(),
            fingerprint: Mutex::new([0; 32]),
            waiting: digest::Waiting::default(),
            last: Mutex::new(start),
            audit: std::sync::OnceLock::new(),
        });
        let fp = reloader.digests.fingerprint(&current);
        if let Ok(mut f) = reloader.fingerprint.lock() {
            *f = fp;
        }
        reloader
    }

    /// The last load's report (the start's until the first reload).
    pub fn last(&self) -> ReloadReport {
        self.last.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Builds a new snapshot from disk, judges it and swaps it in if it passes.
    pub async fn reload(&self, trigger: &str) -> ReloadReport {
        let _one_at_a_time = self.serial.lock().await;
        let started = std::time::Instant::now();
        let mut report = self.reload_inner(trigger).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        report.trigger = trigger.to_owned();
        report.at = unix_now();
        let m = metrics();
        m.reloads.with_label_values(&[report.result.label()]).inc();
        if report.applied() {
            m.last_reload.set(report.at as f64);
            m.certs
                .rejected_files
                .set(self.state.load().cert_errors.len() as f64);
        }
        match report.result {
            Outcome::Ok => tracing::info!(
                trigger,
                result = "ok",
                elapsed_ms,
                changes = %report.diff,
                "{}",
                report.summary
            ),
            Outcome::Partial => tracing::warn!(
                trigger,
                result = "partial",
                elapsed_ms,
                changes = %report.diff,
                problems = report.errors.len(),
                "{}; applied in part, see the errors above",
                report.summary
            ),
            Outcome::Rejected => tracing::error!(
                trigger,
                result = "rejected",
                elapsed_ms,
                problems = report.errors.len(),
                "{}",
                report.summary
            ),
        }
        if let Ok(mut last) = self.last.lock() {
            *last = report.clone();
        }
        // The admin listener records its own reloads, with the caller's address.
        if let (Some(audit), false) = (self.audit.get(), trigger == "API") {
            let detail = format!("{}; {}", report.summary, report.errors.join("; "));
            audit.record(
                "reload",
                trigger,
                report.result.label(),
                detail.trim_end_matches("; "),
            );
        }
        report
    }

    /// Records reloads by SIGHUP and file changes in `audit` from now on.
    pub fn set_audit(&self, audit: crate::observe::audit::Audit) {
        let _ = self.audit.set(audit);
    }

    async fn reload_inner(&self, trigger: &str) -> ReloadReport {
        let previous = self.state.load_full();
        let fp = self.digests.fingerprint(&previous);
        if let Ok(mut f) = self.fingerprint.lock() {
            *f = fp;
        }
        let path = self.config_path.clone();
        let prev = previous.clone();
        let snapshot = match tokio::task::spawn_blocking(move || load(&path, Some(&prev))).await {
            Ok(Ok(loaded)) => loaded.snapshot,
            Ok(Err(errors)) => {
                self.waiting.refresh();
                let errors: Vec<Refusal> = errors.into_iter().map(Refusal::Config).collect();
                return rejected(trigger, &errors, Vec::new());
            }
            Err(join) => {
                tracing::error!(trigger, "reload task failed: {join}");
                return ReloadReport {
                    result: Outcome::Rejected,
                    summary: "reload task failed".into(),
                    errors: vec![join.to_string()],
                    ..ReloadReport::default()
                };
            }
        };
        for e in &snapshot.cert_errors {
            let kept = e
                .file()
                .is_some_and(|f| snapshot.certs.by_file(f).is_some());
            let outcome = if kept {
                "its last good version keeps serving"
            } else {
                "it is not served"
            };
            tracing::error!(
                notify = NotifyEvent::Rejected.mark(),
                trigger,
                "certificate rejected, {outcome}: {e}"
            );
        }
        let mut refusals = judge::certificates(Some(&previous), &snapshot);
        if refusals.is_empty() {
            // Only a snapshot that may serve is worth the DNS lookups.
            snapshot.discover_upstreams().await;
            refusals = judge::routes(Some(&previous), &snapshot);
        }
        if !refusals.is_empty() {
            let mut paths = snapshot.cert_sources.paths();
            paths.extend(snapshot.ca_paths());
            self.waiting.set(paths);
            return rejected(trigger, &refusals, problems(&snapshot));
        }
        self.waiting.set(Vec::new());
        self.apply(trigger, &previous, snapshot)
    }

    /// Publishes a judged snapshot and says what changed.
    fn apply(&self, trigger: &str, previous: &Snapshot, snapshot: Snapshot) -> ReloadReport {
        if snapshot.listeners() != self.running_listeners.as_slice() {
            tracing::warn!(
                "listener changes take effect only after a restart (or binary upgrade); \
                 the current listeners keep running"
            );
        }
        if snapshot.otel != previous.otel {
            tracing::warn!(
                "[otel] changes take effect only after a restart; traces go on as they were set \
                 at start"
            );
        }
        snapshot.start_background(&self.rt);
        snapshot.warn_expiring();
        let errors = problems(&snapshot);
        for e in judge::unresolved(&snapshot) {
            tracing::warn!(trigger, "{e}");
        }
        let summary = summary(&snapshot);
        let diff = Diff::between(previous, &snapshot);
        for change in diff.lines() {
            tracing::info!(trigger, "{change}");
        }
        purge_taken_down(trigger, &snapshot);
        self.state.store(Arc::new(snapshot));
        ReloadReport {
            result: if errors.is_empty() {
                Outcome::Ok
            } else {
                Outcome::Partial
            },
            summary,
            diff,
            errors,
            ..ReloadReport::default()
        }
    }

    /// Reloads when the watched files' content differs from the last load.
    async fn reload_if_changed(&self, trigger: &str) {
        let current = self.digests.fingerprint(&self.state.load());
        let last = self.fingerprint.lock().map(|f| *f).unwrap_or([0; 32]);
        if current != last || self.waiting.changed() {
            self.reload(trigger).await;
        }
    }

    /// Starts the watcher, the poller and the SIGHUP handler on the control runtime.
    pub fn start(self: &Arc<Self>) {
        let reload = self.state.load().reload;
        let (poll, debounce) = (reload.poll_interval, reload.debounce);
        if reload.watch {
            let this = self.clone();
            self.rt.spawn(async move { this.watch(debounce).await });
        }
        let this = self.clone();
        self.rt.spawn(async move {
            let mut tick = tokio::time::interval(poll);
            loop {
                tick.tick().await;
                this.reload_if_changed("file change (content poll)").await;
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

/// The report of a refused reload; every refusal logged, then the snapshot's other problems.
fn rejected(trigger: &str, refusals: &[Refusal], problems: Vec<String>) -> ReloadReport {
    let mut errors: Vec<String> = refusals.iter().map(ToString::to_string).collect();
    for e in &errors {
        tracing::error!(
            notify = NotifyEvent::ReloadRefused.mark(),
            trigger,
            "reload refused, the previous configuration keeps serving: {e}"
        );
    }
    for p in problems {
        if !errors.contains(&p) {
            errors.push(p);
        }
    }
    ReloadReport {
        result: Outcome::Rejected,
        summary: format!(
            "reload refused ({} problem(s)); the previous configuration keeps serving",
            refusals.len()
        ),
        errors,
        ..ReloadReport::default()
    }
}

/// The directories whose changes matter: the config file's, and every TLS path.
fn watch_dirs(s: &Snapshot) -> Vec<PathBuf> {
    let mut dirs = vec![parent(&s.config_path)];
    for p in s.cert_sources.paths().iter().chain(&s.ca_paths()) {
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

/// Removes from the edge cache what the takedowns of `snapshot` cover (a takedown is checked
/// before any lookup, so this frees what would never be served again, and what a later removal
/// of the takedown must not bring back).
pub(crate) fn purge_taken_down(trigger: &str, snapshot: &Snapshot) {
    // A disk tier holds responses from before this process: they are purged before the first
    // request has made the store.
    let store = match crate::cache::store::current() {
        Some(store) => store,
        None if snapshot.cache.disk.is_some() => crate::cache::store::init(&snapshot.cache),
        None => return,
    };
    let chain = &snapshot.policy.chain;
    let purged = store.purge_where(|r| chain.taken_down(&r.host, r.path(), &r.target));
    if purged > 0 {
        tracing::info!(
            trigger,
            purged,
            "edge cache entries under a takedown purged"
        );
    }
}
