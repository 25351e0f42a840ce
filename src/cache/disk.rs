//! The disk tier: stored responses also written to a directory (`[cache] disk_dir`), so they
//! survive a restart or a binary upgrade, within `disk_bytes`. Files are written by a thread
//! of their own from a bounded queue (a full queue skips the write), whole to a temporary name
//! and then renamed, and end with a SHA-256 of all before it: a torn or corrupted file is
//! removed when read, never served. A memory miss reads the key's file (off the worker
//! thread) and puts what it holds back in memory. Responses that vary stay in memory only.
//! An index of the keys on disk (read from the files' heads at open) lets purges by prefix and
//! by takedown reach responses that are no longer in memory.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::fresh::Freshness;
use super::object::{Object, Requested};

/// Files written per second is what the queue absorbs; beyond it writes are skipped.
const QUEUE: usize = 256;
/// What a file starts with (its format's version).
const MAGIC: &[u8; 8] = b"MSHCACH1";
/// After a write that goes over the limit, the oldest files go until this share is used.
const LOW_WATER: f64 = 0.9;
/// The most of a file read for its key, host and target (the index).
const HEAD_BYTES: u64 = 64 * 1024;

/// The keys held on disk, with what was requested (takedowns match that).
type Index = Arc<Mutex<BTreeMap<String, Requested>>>;

/// The disk tier of the process's store.
pub struct Disk {
    dir: PathBuf,
    limit: u64,
    used: Arc<AtomicU64>,
    index: Index,
    writes: SyncSender<Arc<Object>>,
}

impl Disk {
    /// The tier in `dir` (made if missing; temporary files a crash left are removed), at most
    /// `limit` bytes.
    pub fn open(dir: &Path, limit: u64) -> std::io::Result<Disk> {
        std::fs::create_dir_all(dir)?;
        let (mut used, mut index) = (0, BTreeMap::new());
        for entry in std::fs::read_dir(dir)?.flatten() {
            let path = entry.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("tmp") => _ = std::fs::remove_file(&path),
                Some("obj") => {
                    used += entry.metadata().map_or(0, |m| m.len());
                    if let Some((key, requested)) = read_head(&path) {
                        index.insert(key, requested);
                    }
                }
                _ => {}
            }
        }
        let used = Arc::new(AtomicU64::new(used));
        let index: Index = Arc::new(Mutex::new(index));
        let (writes, queue) = sync_channel::<Arc<Object>>(QUEUE);
        let (writer_dir, writer_used) = (dir.to_path_buf(), used.clone());
        let writer_index = index.clone();
        std::thread::Builder::new()
            .name("menshen-cache-disk".into())
            .spawn(move || {
                for object in queue {
                    write(&writer_dir, &object, &writer_used, limit, &writer_index);
                }
            })?;
        Ok(Disk {
            dir: dir.to_path_buf(),
            limit,
            used,
            index,
            writes,
        })
    }

    /// Queues `object` for writing (skipped when the queue is full or it varies).
    pub fn save(&self, object: &Arc<Object>, varies: bool) {
        if !varies && (object.body.len() as u64) < self.limit {
            let _ = self.writes.try_send(object.clone());
        }
    }

    /// The object stored under `key`, read from its file; a file that does not check out is
    /// removed.
    pub fn load(&self, key: &str) -> Option<Object> {
        let path = file_of(&self.dir, key);
        let data = std::fs::read(&path).ok()?;
        match decode(&data).filter(|o| o.key == key) {
            Some(object) => Some(object),
            None => {
                tracing::warn!(file = %path.display(), "cache file torn or corrupt: removed");
                self.forget(&path);
                None
            }
        }
    }

    /// Removes the file of `key`, if any.
    pub fn remove(&self, key: &str) {
        lock(&self.index).remove(key);
        self.forget(&file_of(&self.dir, key));
    }

    /// The keys on disk that `wanted` picks (by key, and what was requested).
    pub fn keys_where(&self, wanted: impl Fn(&str, &Requested) -> bool) -> Vec<String> {
        let index = lock(&self.index);
        let picked = index.iter().filter(|(k, r)| wanted(k, r));
        picked.map(|(k, _)| k.clone()).collect()
    }

    /// Bytes of files held.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn forget(&self, path: &Path) {
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        if std::fs::remove_file(path).is_ok() {
            self.used.fetch_sub(len.min(self.used()), Ordering::Relaxed);
        }
    }
}

/// The file of `key`: its SHA-256, hex.
fn file_of(dir: &Path, key: &str) -> PathBuf {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let name: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{name}.obj"))
}

fn lock(index: &Index) -> std::sync::MutexGuard<'_, BTreeMap<String, Requested>> {
    index.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The key and request a file holds, from its head (not checked against its checksum: that
/// is done when it is read whole).
fn read_head(path: &Path) -> Option<(String, Requested)> {
    let mut head = Vec::new();
    let file = std::fs::File::open(path).ok()?;
    file.take(HEAD_BYTES).read_to_end(&mut head).ok()?;
    Reader(&head).head()
}

/// Writes `object`'s file (a temporary one, renamed), then trims the directory to the limit.
fn write(dir: &Path, object: &Object, used: &AtomicU64, limit: u64, index: &Index) {
    let path = file_of(dir, &object.key);
    let tmp = path.with_extension("tmp");
    let data = encode(object);
    let old = std::fs::metadata(&path).map_or(0, |m| m.len());
    if let Err(e) = std::fs::write(&tmp, &data).and_then(|()| std::fs::rename(&tmp, &path)) {
        tracing::warn!(file = %path.display(), "cache file not written: {e}");
        let _ = std::fs::remove_file(&tmp);
        return;
    }
    lock(index).insert(object.key.clone(), object.requested.clone());
    let now = used.load(Ordering::Relaxed).saturating_sub(old) + data.len() as u64;
    used.store(now, Ordering::Relaxed);
    if now > limit {
        trim(dir, used, (limit as f64 * LOW_WATER) as u64, index);
    }
}

/// Removes the oldest files until `target` bytes are used.
fn trim(dir: &Path, used: &AtomicU64, target: u64, index: &Index) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "obj"))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((m.modified().ok()?, m.len(), e.path()))
        })
        .collect();
    files.sort();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    for (_, len, path) in files {
        if total <= target {
            break;
        }
        if let Some((key, _)) = read_head(&path) {
            lock(index).remove(&key);
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= len;
        }
    }
    used.store(total, Ordering::Relaxed);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The file's bytes: the magic, the object's parts with their lengths, its checksum.
fn encode(o: &Object) -> Vec<u8> {
    let mut out = Vec::with_capacity(o.body.len() + o.fields.len() + 256);
    out.extend_from_slice(MAGIC);
    put_bytes(&mut out, o.key.as_bytes());
    put_bytes(&mut out, o.requested.host.as_bytes());
    put_bytes(&mut out, o.requested.target.as_bytes());
    put_bytes(&mut out, &o.fields);
    put_bytes(&mut out, &o.body);
    // When it was stored, as wall-clock time (an Instant does not survive the process).
    let stored = SystemTime::now() - Instant::now().saturating_duration_since(o.stored_at);
    let f = &o.fresh;
    let times = [
        stored.duration_since(UNIX_EPOCH).unwrap_or_default(),
        f.lifetime,
        f.initial_age,
        f.while_revalidate,
        f.if_error,
    ];
    for t in times {
        out.extend_from_slice(&millis(t).to_le_bytes());
    }
    out.extend_from_slice(&o.status.to_le_bytes());
    out.push(u8::from(f.must_revalidate));
    let sum = ring::digest::digest(&ring::digest::SHA256, &out);
    out.extend_from_slice(sum.as_ref());
    out
}

/// Reads what `take` takes off the front of a file.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u64()?).ok()?;
        self.take(n)
    }

    fn text(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    /// The magic, then the key and what was requested.
    fn head(&mut self) -> Option<(String, Requested)> {
        if self.take(MAGIC.len())? != MAGIC {
            return None;
        }
        let key = self.text()?.to_owned();
        let requested = Requested {
            host: self.text()?.into(),
            target: self.text()?.into(),
        };
        Some((key, requested))
    }
}

/// The object a file holds; `None` when it is torn (short) or corrupt (its checksum).
fn decode(data: &[u8]) -> Option<Object> {
    let body_end = data.len().checked_sub(32)?;
    let (content, sum) = data.split_at(body_end);
    let digest = ring::digest::digest(&ring::digest::SHA256, content);
    if digest.as_ref() != sum {
        return None;
    }
    let mut r = Reader(content);
    let (key, requested) = r.head()?;
    let fields = Bytes::copy_from_slice(r.bytes()?);
    let body = Bytes::copy_from_slice(r.bytes()?);
    let mut times = [Duration::ZERO; 5];
    for t in &mut times {
        *t = Duration::from_millis(r.u64()?);
    }
    let status = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
    let must_revalidate = r.take(1)?[0] == 1;
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH + times[0])
        .unwrap_or_default();
    let stored_at = Instant::now()
        .checked_sub(since)
        .unwrap_or_else(Instant::now);
    Some(Object {
        key,
        status,
        fields,
        body,
        stored_at,
        fresh: Freshness {
            lifetime: times[1],
            initial_age: times[2],
            while_revalidate: times[3],
            if_error: times[4],
            must_revalidate,
        },
        requested,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object() -> Object {
        Object {
            key: "site\u{1}a.cn/x".into(),
            status: 200,
            fields: Bytes::from_static(b"etag: \"v1\"\r\n"),
            body: Bytes::from_static(b"hello"),
            stored_at: Instant::now(),
            fresh: Freshness {
                lifetime: Duration::from_secs(60),
                initial_age: Duration::from_secs(3),
                while_revalidate: Duration::ZERO,
                if_error: Duration::from_secs(9),
                must_revalidate: false,
            },
            requested: Requested {
                host: "a.cn".into(),
                target: "/x".into(),
            },
        }
    }

    #[test]
    fn a_file_reads_back_whole_and_a_damaged_one_not_at_all() {
        let data = encode(&object());
        let back = decode(&data).expect("reads back");
        assert_eq!(
            (back.key.as_str(), &back.body[..]),
            ("site\u{1}a.cn/x", &b"hello"[..])
        );
        assert_eq!(back.fresh, object().fresh);
        assert_eq!(back.requested, object().requested);
        assert!(decode(&data[..data.len() - 1]).is_none(), "torn");
        let mut flipped = data.clone();
        flipped[20] ^= 1;
        assert!(decode(&flipped).is_none(), "corrupt");
    }
}
