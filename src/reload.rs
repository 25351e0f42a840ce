//! Watch -> build a whole new snapshot -> validate -> swap.
//!
//! Three triggers lead to [`Reloader::reload`]: file events (notify, debounced) on the config
//! file's directory and the certificate and approved-CA directories; a content-hash poll that
//! catches what watchers miss (Kubernetes swaps a `..data` symlink; single-file mounts); and
//! SIGHUP. A config that fails to compile leaves the serving snapshot untouched. The poll reads a
//! file again only when its metadata moved (see [`FileDigests`]), so it stays cheap with
//! thousands of certificate files.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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
    digests: FileDigests,
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
            digests: FileDigests::default(),
            fingerprint: Mutex::new([0; 32]),
            last: Mutex::new(None),
        });
        let fp = reloader.digests.fingerprint(&current);
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
        let fp = self.digests.fingerprint(&previous);
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
        let current = self.digests.fingerprint(&self.state.load());
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

/// What a file's metadata says about its content: a write moves `ctime` (which no tool can set
/// back), a rename or a Kubernetes `..data` swap moves the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// Changed so recently that a second write in the same clock tick (filesystems with coarse
    /// timestamps) could leave the stamp as it was: such files are read every time.
    fn is_recent(&self, now: i64) -> bool {
        now - self.ctime.0.max(self.mtime.0) < 2
    }
}

/// Content hashes of the watched files. A file is read and hashed again only when its [`Stamp`]
/// moved or is recent, so a poll over 10,000 unchanged certificates costs 10,000 `stat`s.
#[derive(Debug, Default)]
pub struct FileDigests {
    known: Mutex<HashMap<PathBuf, (Stamp, [u8; 32])>>,
    reads: AtomicU64,
}

impl FileDigests {
    /// SHA-256 over the names and contents of the config file and every file in the TLS paths.
    pub fn fingerprint(&self, s: &Snapshot) -> [u8; 32] {
        let mut paths = vec![s.config_path.clone()];
        for p in s.cert_sources.paths().iter().chain(&s.approved_paths) {
            match files_in(p) {
                Ok(files) => paths.extend(files),
                Err(_) => paths.push(p.clone()),
            }
        }
        self.fingerprint_paths(&paths)
    }

    /// SHA-256 over the names and contents of `paths` (a missing file counts as empty).
    pub fn fingerprint_paths(&self, paths: &[PathBuf]) -> [u8; 32] {
        self.fingerprint_at(paths, crate::tls::cert::unix_now())
    }

    /// [`Self::fingerprint_paths`] as if the clock said `now` (seconds since the epoch).
    fn fingerprint_at(&self, paths: &[PathBuf], now: i64) -> [u8; 32] {
        let mut known = match self.known.lock() {
            Ok(k) => k,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut next = HashMap::with_capacity(paths.len());
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for p in paths {
            ctx.update(p.as_os_str().as_encoded_bytes());
            let stamp = std::fs::metadata(p).ok().map(|m| Stamp::of(&m));
            let digest = match (stamp, known.get(p)) {
                (Some(stamp), Some((then, digest))) if stamp == *then && !stamp.is_recent(now) => {
                    *digest
                }
                _ => {
                    self.reads.fetch_add(1, Ordering::Relaxed);
                    let content = std::fs::read(p).unwrap_or_default();
                    let mut d = [0; 32];
                    d.copy_from_slice(
                        ring::digest::digest(&ring::digest::SHA256, &content).as_ref(),
                    );
                    d
                }
            };
            ctx.update(&digest);
            if let Some(stamp) = stamp {
                next.insert(p.clone(), (stamp, digest));
            }
        }
        *known = next;
        let mut out = [0; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    /// Files read (not just stat-ed) so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
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
    fn unchanged_files_are_not_read_again_and_every_change_is_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.crt");
        let b = dir.path().join("b.crt");
        std::fs::write(&a, "first").expect("write");
        std::fs::write(&b, "other").expect("write");
        let paths = vec![a.clone(), b.clone()];
        let digests = FileDigests::default();
        let now = crate::tls::cert::unix_now();
        let first = digests.fingerprint_at(&paths, now);
        // Fresh files are read every time: a coarse clock could hide a second write.
        assert_eq!(digests.fingerprint_at(&paths, now), first);
        assert_eq!(digests.reads(), 4);

        // Once settled, unchanged files are only stat-ed.
        let later = now + 10;
        assert_eq!(digests.fingerprint_at(&paths, later), first);
        assert_eq!(digests.reads(), 4, "unchanged files were read again");

        // Same length, mtime put back as `cp -p` would: ctime still moves, so it is seen.
        let mtime = std::fs::metadata(&a)
            .expect("meta")
            .modified()
            .expect("mtime");
        std::fs::write(&a, "fixed").expect("rewrite");
        std::fs::File::options()
            .write(true)
            .open(&a)
            .expect("open")
            .set_modified(mtime)
            .expect("set mtime");
        assert_ne!(digests.fingerprint_at(&paths, later), first);
        assert_eq!(digests.reads(), 5, "only the rewritten file is read");

        // Back to the first content: the first fingerprint again.
        std::fs::write(&a, "first").expect("write back");
        assert_eq!(digests.fingerprint_at(&paths, later), first);

        // A removed file changes it too.
        std::fs::remove_file(&b).expect("remove");
        assert_ne!(digests.fingerprint_at(&paths, later), first);
    }
}
