//! Content hashes of the watched files, cheap enough to poll every second over thousands of
//! certificate files: a file is read again only when its metadata moved.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::snapshot::Snapshot;
use crate::tls::files_in;

/// The files in each directory of `paths`; a path that is not a readable directory as itself.
fn expand<'a>(paths: impl Iterator<Item = &'a PathBuf>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        match files_in(p) {
            Ok(files) => out.extend(files),
            Err(_) => out.push(p.clone()),
        }
    }
    out
}

/// The TLS paths of a refused snapshot (a certificate directory not created yet), watched
/// until the next applied reload: creating or fixing them retries the config that waits.
#[derive(Debug, Default)]
pub struct Waiting {
    digests: FileDigests,
    state: Mutex<(Vec<PathBuf>, [u8; 32])>,
}

impl Waiting {
    /// Watches `paths` from now on (their content now is the baseline).
    pub fn set(&self, paths: Vec<PathBuf>) {
        let digest = self.digests.fingerprint_paths(&expand(paths.iter()));
        if let Ok(mut state) = self.state.lock() {
            *state = (paths, digest);
        }
    }

    /// Takes the current content of the watched paths as the baseline.
    pub fn refresh(&self) {
        let paths = self.paths();
        self.set(paths);
    }

    /// Whether the watched paths changed since the baseline.
    pub fn changed(&self) -> bool {
        let (paths, then) = match self.state.lock() {
            Ok(state) => state.clone(),
            Err(_) => return false,
        };
        !paths.is_empty() && self.digests.fingerprint_paths(&expand(paths.iter())) != then
    }

    fn paths(&self) -> Vec<PathBuf> {
        self.state.lock().map(|s| s.0.clone()).unwrap_or_default()
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
        paths.extend(expand(s.cert_sources.paths().iter().chain(&s.ca_paths())));
        paths.extend(s.policy.takedown_files.iter().cloned());
        paths.extend(s.error_page_files());
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
