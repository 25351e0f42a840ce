//! `menshen logs verify DIR`: checks every chained log in a directory (the access log, the admin
//! audit log), file by file in their sequence, against the chain key.
//!
//! Each writer's lines must follow each other (`seq` counts up by one, each `chain` value is the
//! keyed hash of the previous value and the line); each rotated file must match its manifest
//! (line count, size, SHA-256, first and last chain value) and follow the previous sealed file.
//! What does not is a finding, named by file and line: the first line altered, removed or moved
//! in each file, a file truncated, missing from the sequence, or not sealed.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::chain::{ChainKey, Chained, CHAIN_BYTES};
use super::compress;
use super::seal::{manifest_path, manifests, rotated_order, summarize, Manifest, Summary};

/// What `verify` found.
#[derive(Debug, Default)]
pub struct Report {
    /// Files read.
    pub files: usize,
    /// Lines read.
    pub lines: u64,
    /// Every problem, one sentence each, naming the file (and line).
    pub findings: Vec<String>,
}

/// A writer's place in its chain: the last chain value seen and the next `seq` expected.
struct Link {
    prev: [u8; CHAIN_BYTES],
    next: u64,
}

/// Verifies every chained log in `dir`.
pub fn verify(dir: &Path, key: &ChainKey) -> std::io::Result<Report> {
    let mut report = Report::default();
    for log in logs_in(dir)? {
        verify_log(&dir.join(&log), key, &mut report);
    }
    Ok(report)
}

/// Names of the logs in `dir`: live files that are chained, and the logs rotated files and
/// manifests belong to.
fn logs_in(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let fname = entry.file_name().to_string_lossy().into_owned();
        let base = fname.strip_suffix(".manifest").unwrap_or(&fname);
        if let Some(log) = log_of_rotated(base) {
            names.insert(log.to_owned());
        } else if !fname.ends_with(".tmp") && first_line_is_chained(&entry.path()) {
            names.insert(fname);
        }
    }
    Ok(names.into_iter().collect())
}

fn log_of_rotated(fname: &str) -> Option<&str> {
    fname
        .match_indices('.')
        .map(|(at, _)| &fname[..at])
        .find(|log| !log.is_empty() && rotated_order(fname, log).is_some())
}

fn first_line_is_chained(path: &Path) -> bool {
    use std::io::BufRead;
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let mut line = String::new();
    let _ = std::io::BufReader::new(file).read_line(&mut line);
    Chained::parse(line.trim_end()).is_some()
}

fn verify_log(log: &Path, key: &ChainKey, report: &mut Report) {
    let sealed = sealed_manifests(log, key, report);
    let by_file: HashMap<&str, &Manifest> = sealed.values().map(|m| (m.file.as_str(), m)).collect();
    let mut links: HashMap<String, Link> = HashMap::new();
    let mut claimed_sealed = 0;
    let mut files = super::seal::rotated_files(log);
    if log.exists() {
        files.push(log.to_path_buf());
    }
    for (i, file) in files.iter().enumerate() {
        let fname = compress::plain(file)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let manifest = by_file.get(fname.as_str()).copied();
        if manifest.is_none() && file.as_path() != log && !manifest_path(file).exists() {
            report.findings.push(format!(
                "{}: not sealed (no manifest beside it)",
                file.display()
            ));
        }
        if let Some(m) = manifest {
            let before = m.index.checked_sub(1).and_then(|p| sealed.get(&p));
            if let Some(prev) = before {
                if prev.content.last_chain != m.previous_last_chain {
                    report.findings.push(format!(
                        "{}: does not follow {} (its manifest names another previous file)",
                        file.display(),
                        prev.file
                    ));
                }
            }
        }
        let mut check = FileCheck {
            key,
            links: &mut links,
            first_file: i == 0,
            finding: None,
            order: Vec::new(),
            ids: Vec::new(),
            claimed_sealed: &mut claimed_sealed,
        };
        let summary = summarize(file, |line| check.line(line));
        let finding = check.finish();
        check_content(file, summary, finding, manifest, report);
    }
    let last_index = sealed.keys().next_back().copied().unwrap_or(0);
    if claimed_sealed > last_index {
        report.findings.push(format!(
            "{}: sealed file #{claimed_sealed} missing (a later writer opened after it was sealed; \
             the newest manifest present is #{last_index})",
            log.display()
        ));
    }
}

/// The manifests of `log`'s sealed files by index, each checked against its key; gaps in their
/// sequence and sealed files that are gone are findings.
fn sealed_manifests(log: &Path, key: &ChainKey, report: &mut Report) -> BTreeMap<u64, Manifest> {
    let (dir, _) = super::seal::dir_and_name(log);
    let mut sealed: BTreeMap<u64, Manifest> = BTreeMap::new();
    for (path, m) in manifests(log, key) {
        match m {
            Ok(m) => {
                sealed.insert(m.index, m);
            }
            Err(e) => report.findings.push(format!("{}: {e}", path.display())),
        }
    }
    let indexes: Vec<u64> = sealed.keys().copied().collect();
    for pair in indexes.windows(2) {
        if pair[1] > pair[0] + 1 {
            report.findings.push(format!(
                "{}: sealed file(s) #{} to #{} missing from the sequence (between {} and {})",
                log.display(),
                pair[0] + 1,
                pair[1] - 1,
                sealed[&pair[0]].file,
                sealed[&pair[1]].file
            ));
        }
    }
    for m in sealed.values() {
        if !compress::exists(&dir.join(&m.file)) {
            report.findings.push(format!(
                "{}: missing (its manifest says {} lines from {} to {})",
                dir.join(&m.file).display(),
                m.content.lines,
                m.content.first_ts.as_deref().unwrap_or("-"),
                m.content.last_ts.as_deref().unwrap_or("-")
            ));
        }
    }
    sealed
}

/// Counts a read `file` into `report` with what its lines showed (`finding`) and, for a sealed
/// one, whether it is whole and unchanged against its manifest.
fn check_content(
    file: &Path,
    summary: std::io::Result<Summary>,
    finding: Option<String>,
    manifest: Option<&Manifest>,
    report: &mut Report,
) {
    report.files += 1;
    let summary = match summary {
        Ok(s) => s,
        Err(e) if compress::is_compressed(file) => {
            report.findings.push(format!(
                "{}: the compressed file is cut short or damaged ({e}){}",
                file.display(),
                manifest.map_or(String::new(), |m| format!(
                    "; its manifest says {} lines",
                    m.content.lines
                ))
            ));
            return;
        }
        Err(e) => {
            report
                .findings
                .push(format!("{}: cannot read: {e}", file.display()));
            return;
        }
    };
    report.lines += summary.lines;
    if let Some(f) = finding {
        report.findings.push(format!("{}:{f}", file.display()));
    }
    let Some(m) = manifest else {
        return;
    };
    if summary.lines < m.content.lines || summary.bytes < m.content.bytes {
        report.findings.push(format!(
            "{}: truncated: {} lines ({} bytes) where its manifest says {} ({})",
            file.display(),
            summary.lines,
            summary.bytes,
            m.content.lines,
            m.content.bytes
        ));
    } else if summary.sha256 != m.content.sha256 || summary.last_chain != m.content.last_chain {
        report.findings.push(format!(
            "{}: content differs from its manifest ({} lines where it says {}; SHA-256 \
             {} where it says {})",
            file.display(),
            summary.lines,
            m.content.lines,
            summary.sha256,
            m.content.sha256
        ));
    }
}

/// A finding in a file: its line, the (writer, seq) it expected when lines seem removed (they
/// may only have moved), and what it says.
type Finding = (u64, Option<(String, u64)>, String);

/// The line checks of one file.
struct FileCheck<'a> {
    key: &'a ChainKey,
    links: &'a mut HashMap<String, Link>,
    /// The oldest file present: retention may have removed the start of its writers' chains.
    first_file: bool,
    /// The first problem in this file: (line number, writer, seq expected, what).
    finding: Option<Finding>,
    /// (writer, seq) of every line, to tell a moved line from a removed one.
    order: Vec<Option<(u32, u64)>>,
    /// Writer ids of this file, numbered for `order`.
    ids: Vec<String>,
    claimed_sealed: &'a mut u64,
}

impl FileCheck<'_> {
    fn line(&mut self, line: &str) {
        let n = self.order.len() as u64 + 1;
        let Some(c) = Chained::parse(line) else {
            self.order.push(None);
            self.found(
                n,
                None,
                "line altered (its chain value is missing or malformed)".into(),
            );
            return;
        };
        let w = self.writer_number(c.writer);
        self.order.push(Some((w, c.seq)));
        if c.seq == 0 {
            if let Some(sealed) = opened_sealed(line) {
                *self.claimed_sealed = (*self.claimed_sealed).max(sealed);
            }
        }
        self.follows(n, &c);
        self.links.insert(
            c.writer.to_owned(),
            Link {
                prev: c.chain,
                next: c.seq + 1,
            },
        );
    }

    /// The number of `writer` in this file's `ids`.
    fn writer_number(&mut self, writer: &str) -> u32 {
        let w = match self.ids.iter().position(|k| k == writer) {
            Some(w) => w,
            None => {
                self.ids.push(writer.to_owned());
                self.ids.len() - 1
            }
        };
        w as u32
    }

    /// Checks that line `n` follows its writer's previous line: the next number, and a chain
    /// value linked to the one before.
    fn follows(&mut self, n: u64, c: &Chained<'_>) {
        let link = self.links.get(c.writer).map(|l| (l.prev, l.next));
        let expected = match link {
            Some((_, next)) => next,
            None if c.seq == 0 || self.first_file => c.seq,
            None => {
                self.found(
                    n,
                    None,
                    format!(
                        "lines removed before this line (writer {} begins at line #{} of its \
                         chain; no file holds the lines before it)",
                        c.writer, c.seq
                    ),
                );
                c.seq
            }
        };
        let prev = match link {
            Some((prev, _)) if c.seq != 0 => Some(prev),
            _ if c.seq == 0 => Some([0; CHAIN_BYTES]),
            // The oldest file present starts mid-chain: its first line cannot be checked.
            _ => None,
        };
        if c.seq == expected || c.seq == 0 {
            if prev.is_some_and(|p| self.key.link(&p, c.body.as_bytes()) != c.chain) {
                self.found(
                    n,
                    None,
                    "line altered (its chain value does not match)".into(),
                );
            }
        } else if c.seq > expected {
            self.found(
                n,
                Some((c.writer.to_owned(), expected)),
                format!(
                    "{} line(s) removed before this line (writer {} jumps from #{} to #{})",
                    c.seq - expected,
                    c.writer,
                    expected.saturating_sub(1),
                    c.seq
                ),
            );
        } else {
            self.found(
                n,
                None,
                format!(
                    "line out of order (writer {}'s line #{} after #{})",
                    c.writer,
                    c.seq,
                    expected.saturating_sub(1)
                ),
            );
        }
    }

    fn found(&mut self, line: u64, gap: Option<(String, u64)>, what: String) {
        if self.finding.is_none() {
            self.finding = Some((line, gap, what));
        }
    }

    /// The first finding as `LINE: what`; a "removed" line whose missing predecessor turns up
    /// later in the file was moved instead.
    fn finish(self) -> Option<String> {
        let (line, gap, what) = self.finding?;
        if let Some((writer, seq)) = gap {
            let w = self.ids.iter().position(|k| *k == writer).map(|w| w as u32);
            let later = self.order[line as usize..]
                .iter()
                .position(|o| w.is_some() && *o == w.map(|w| (w, seq)));
            if let Some(after) = later {
                return Some(format!(
                    "{line}: line out of order (writer {writer}'s line #{seq} comes {} line(s) \
                     later, at line {})",
                    after + 1,
                    line as usize + after + 1
                ));
            }
        }
        Some(format!("{line}: {what}"))
    }
}

/// `sealed` of a writer's `opened` line.
fn opened_sealed(line: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    (v.get("event")?.as_str()? == "opened")
        .then(|| v.get("sealed")?.as_u64())
        .flatten()
}
