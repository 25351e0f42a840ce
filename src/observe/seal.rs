//! Sealing rotated log files: each gets `FILE.manifest` beside it, one JSON object naming its
//! place in the sequence (`index`, the previous file's last chain value), its line count, size,
//! SHA-256, first and last chain values and time range, and a MAC over all of that under the
//! chain key. A sealed file cannot be edited, truncated or replaced, nor a file dropped from the
//! middle of the sequence, without `menshen logs verify` saying so.
//!
//! A thread of its own seals, a moment after the rotation (another process's writer, during a
//! binary upgrade, may still append its last lines), so the writer never waits for the hashing;
//! then it compresses the sealed file (`compress`), which the manifest goes on describing.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::chain::{hex, ChainKey, Chained};
use super::compress;

/// How long after a rotation the file is sealed.
const SEAL_DELAY: Duration = Duration::from_secs(1);

/// What a manifest says of its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The live file's name (`access.log`): the sequence this file belongs to.
    pub log: String,
    /// The sealed file's name.
    pub file: String,
    /// Its place in the sequence: one more than the previous sealed file's.
    pub index: u64,
    /// What the file held when it was sealed.
    #[serde(flatten)]
    pub content: Summary,
    /// `last_chain` of the file sealed before this one.
    pub previous_last_chain: Option<String>,
    /// When it was sealed.
    pub sealed_at: String,
    /// HMAC-SHA256 of this object without `mac`, under the chain key.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mac: Option<String>,
}

impl Manifest {
    fn text_without_mac(&self) -> String {
        let bare = Manifest {
            mac: None,
            ..self.clone()
        };
        serde_json::to_string(&bare).unwrap_or_default()
    }

    /// Reads a manifest; an error says what is wrong with it (unreadable, not a manifest, its
    /// MAC does not match: it was edited or not written with this key).
    pub fn load(path: &Path, key: &ChainKey) -> Result<Manifest, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
        let m: Manifest = serde_json::from_str(text.trim())
            .map_err(|e| format!("not a manifest ({e}): it was altered"))?;
        if m.mac.as_deref() != Some(key.seal(m.text_without_mac().as_bytes()).as_str()) {
            return Err(
                "its MAC does not match: the manifest was altered, or the key is not \
                        the one it was sealed with"
                    .into(),
            );
        }
        Ok(m)
    }
}

/// Line count, size, hash, first and last chain values and times of a log file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Lines.
    pub lines: u64,
    /// Bytes.
    pub bytes: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// First and last chain value.
    pub first_chain: Option<String>,
    /// See `first_chain`.
    pub last_chain: Option<String>,
    /// First and last `ts`.
    pub first_ts: Option<String>,
    /// See `first_ts`.
    pub last_ts: Option<String>,
}

/// Reads a log file through, line by line, calling `each` with every line (without newline).
/// A compressed file (`.zst`) is read through the decompressor: the summary is of its content.
pub fn summarize(path: &Path, mut each: impl FnMut(&str)) -> std::io::Result<Summary> {
    let mut reader = BufReader::with_capacity(256 * 1024, compress::open(path)?);
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut s = Summary::default();
    // Only the first and the latest chain value and `ts` are kept: per line, they are copied
    // into buffers reused across lines (a sealed file has millions of lines).
    let (mut first_chain, mut last_chain) = (None, None);
    let mut last_ts = String::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        digest.update(&buf);
        s.bytes += n as u64;
        s.lines += 1;
        let line = String::from_utf8_lossy(buf.strip_suffix(b"\n").unwrap_or(&buf));
        if let Some(c) = Chained::parse(&line) {
            first_chain.get_or_insert(c.chain);
            last_chain = Some(c.chain);
        }
        if let Some(ts) = ts_of(&line) {
            s.first_ts.get_or_insert_with(|| ts.to_owned());
            last_ts.clear();
            last_ts.push_str(ts);
        }
        each(&line);
    }
    s.sha256 = hex(digest.finish().as_ref());
    s.first_chain = first_chain.map(|c| hex(&c));
    s.last_chain = last_chain.map(|c| hex(&c));
    s.last_ts = s.first_ts.is_some().then_some(last_ts);
    Ok(s)
}

/// The `ts` a line starts with.
pub fn ts_of(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("{\"ts\":\"")?;
    rest.split('"').next()
}

/// The manifest file of a rotated file, plain or compressed.
pub fn manifest_path(file: &Path) -> PathBuf {
    let mut name = compress::plain(file).into_os_string();
    name.push(".manifest");
    PathBuf::from(name)
}

/// The sort key of a rotated file of `log` (`log.YYYY-MM-DD[.N][.zst]`); `None` for other files.
pub fn rotated_order(file_name: &str, log: &str) -> Option<(String, u32)> {
    let file_name = file_name
        .strip_suffix(compress::SUFFIX)
        .unwrap_or(file_name);
    let rest = file_name.strip_prefix(log)?.strip_prefix('.')?;
    let (date, n) = match rest.split_once('.') {
        Some((date, n)) => (date, n.parse().ok()?),
        None => (rest, 0),
    };
    let ok = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    ok.then(|| (date.to_owned(), n))
}

/// The manifests of `log` (the live file's path) in `dir`, each loaded.
pub fn manifests(log: &Path, key: &ChainKey) -> Vec<(PathBuf, Result<Manifest, String>)> {
    let (dir, name) = dir_and_name(log);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let fname = entry.file_name().to_string_lossy().into_owned();
        if let Some(file) = fname.strip_suffix(".manifest") {
            if rotated_order(file, &name).is_some() {
                out.push((entry.path(), Manifest::load(&entry.path(), key)));
            }
        }
    }
    out
}

/// The directory and file name of a log path.
pub fn dir_and_name(log: &Path) -> (PathBuf, String) {
    let dir = match log.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = log
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (dir, name)
}

/// Seals `file`, a rotated file of the log at `log`: writes `file.manifest`.
pub fn seal(file: &Path, log: &Path, key: &ChainKey) -> std::io::Result<Manifest> {
    // Sealed already (by the other process of a binary upgrade, both finding it unsealed at
    // start): a second seal would take the next index and leave a gap in the sequence.
    if let Ok(m) = Manifest::load(&manifest_path(file), key) {
        return Ok(m);
    }
    // Another process's writer may still append its last lines to a file just rotated.
    std::thread::sleep(SEAL_DELAY);
    let summary = summarize(file, |_| {})?;
    let previous = manifests(log, key)
        .into_iter()
        .filter_map(|(_, m)| m.ok())
        .max_by_key(|m| m.index);
    let (_, name) = dir_and_name(log);
    let mut sealed_at = String::new();
    super::text::push_rfc3339_millis(&mut sealed_at, SystemTime::now());
    let mut m = Manifest {
        log: name,
        file: file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        index: previous.as_ref().map_or(1, |p| p.index + 1),
        content: summary,
        previous_last_chain: previous.and_then(|p| p.content.last_chain),
        sealed_at,
        mac: None,
    };
    m.mac = Some(key.seal(m.text_without_mac().as_bytes()));
    let path = manifest_path(file);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let mut out = std::fs::File::create(&tmp)?;
    out.write_all(serde_json::to_string(&m).unwrap_or_default().as_bytes())?;
    out.write_all(b"\n")?;
    out.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(m)
}

/// Rotated files of the log at `log`, oldest first. A file found both plain and compressed
/// (a process stopped between writing the `.zst` and removing the plain file) is listed plain.
pub fn rotated_files(log: &Path) -> Vec<PathBuf> {
    let (dir, name) = dir_and_name(log);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            Some((
                rotated_order(&e.file_name().to_string_lossy(), &name)?,
                e.path(),
            ))
        })
        .collect();
    files.sort();
    files.dedup_by(|later, first| later.0 == first.0);
    files.into_iter().map(|(_, p)| p).collect()
}

/// Starts the sealing thread of the log at `log`; rotated files sent to it are sealed and then
/// compressed, in order. Files an earlier process left unsealed or uncompressed (stopped between
/// rotation and seal, or an older version) go first.
pub fn start_sealer(log: PathBuf, key: ChainKey) -> std::io::Result<mpsc::Sender<PathBuf>> {
    let (tx, rx) = mpsc::channel::<PathBuf>();
    for file in rotated_files(&log) {
        if !compress::is_compressed(&file) {
            let _ = tx.send(file);
        }
    }
    std::thread::Builder::new()
        .name("menshen-log-seal".into())
        .spawn(move || {
            while let Ok(file) = rx.recv() {
                seal_and_compress(&file, &log, &key);
            }
        })?;
    Ok(tx)
}

fn seal_and_compress(file: &Path, log: &Path, key: &ChainKey) {
    match seal(file, log, key) {
        Ok(m) => {
            tracing::info!(file = %file.display(), index = m.index, lines = m.content.lines, "log file sealed")
        }
        Err(e) => {
            tracing::error!(file = %file.display(), "cannot seal log file: {e}; `menshen logs verify` will report it unsealed");
            return;
        }
    }
    if let Err(e) = compress::compress(file) {
        tracing::error!(file = %file.display(), "cannot compress sealed log file: {e}; it stays plain and is not shipped");
    }
}
