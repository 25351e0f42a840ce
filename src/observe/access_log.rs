//! The access log: one JSON object per request per line, written off the data path.
//!
//! Requests hand finished lines to a bounded channel; one writer thread owns the file. It flushes
//! at least every second and on shutdown, rotates daily and by size (the old file gets a
//! `.YYYY-MM-DD[.N]` suffix), and removes rotated files older than the retention. It polls the
//! channel rather than sleeping on it, so requests never pay for waking it. If the writer
//! falls behind, lines are dropped and counted rather than stalling requests.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The writer looks for new lines this often when idle.
const POLL_EVERY: Duration = Duration::from_millis(10);
/// Lines reach the file at least this often, however busy.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Where and how the log is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// The live file.
    pub path: PathBuf,
    /// Days rotated files are kept.
    pub retention_days: u32,
    /// Rotate beyond this size.
    pub max_file_bytes: u64,
    /// Channel capacity, in lines.
    pub buffer_lines: usize,
}

enum Msg {
    Line(String),
    Flush(mpsc::Sender<()>),
}

/// The handle requests log through.
#[derive(Debug)]
pub struct AccessLog {
    tx: SyncSender<Msg>,
    /// Lines dropped because the writer fell behind.
    pub dropped: AtomicU64,
    /// Lines lost because writing them failed (a full disk, an I/O error).
    pub failed: Arc<AtomicU64>,
    /// Lines queued and not yet written.
    pub backlog: Arc<AtomicUsize>,
}

impl AccessLog {
    /// Opens the file (creating its directory) and starts the writer thread.
    pub fn start(config: AccessLogConfig) -> std::io::Result<Arc<AccessLog>> {
        if let Some(dir) = config.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = open(&config.path)?;
        let (tx, rx) = mpsc::sync_channel(config.buffer_lines.max(1));
        let backlog = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            failed: failed.clone(),
            failing: false,
            today: day_of(SystemTime::now()),
            since_clock: 0,
            size: file.metadata().map(|m| m.len()).unwrap_or(0),
            day: day_of(SystemTime::now()),
            out: BufWriter::with_capacity(256 * 1024, file),
            config,
            backlog: backlog.clone(),
        };
        std::thread::Builder::new()
            .name("menshen-access-log".into())
            .spawn(move || writer.run(rx))?;
        Ok(Arc::new(AccessLog {
            tx,
            dropped: AtomicU64::new(0),
            failed,
            backlog,
        }))
    }

    /// Queues one line (without its newline). Never blocks.
    pub fn log(&self, line: String) {
        self.backlog.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.backlog.fetch_sub(1, Ordering::Relaxed);
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(dropped = n, "access log writer is behind; lines dropped");
                }
            }
        }
    }

    /// Writes out everything queued so far; waits at most `timeout`.
    pub fn flush(&self, timeout: Duration) {
        let (ack, done) = mpsc::channel();
        if self.tx.send(Msg::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(timeout);
        }
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

struct Writer {
    out: BufWriter<File>,
    size: u64,
    day: u64,
    config: AccessLogConfig,
    backlog: Arc<AtomicUsize>,
    failed: Arc<AtomicU64>,
    /// The last write or flush failed: said once, not once per line.
    failing: bool,
    /// Today (days since 1970), read every 1,024 lines and whenever the writer is idle.
    today: u64,
    since_clock: u32,
}

impl Writer {
    /// Drains the channel in batches. The writer polls instead of blocking on the channel, so a
    /// request handing over its line never has to wake this thread (a futex wake and a context
    /// switch per request cost more than formatting the line).
    fn run(mut self, rx: Receiver<Msg>) {
        self.remove_expired();
        let mut last_flush = Instant::now();
        let mut dirty = false;
        loop {
            let mut got = false;
            loop {
                match rx.try_recv() {
                    Ok(Msg::Line(line)) => {
                        self.backlog.fetch_sub(1, Ordering::Relaxed);
                        self.write(&line);
                        got = true;
                        dirty = true;
                    }
                    Ok(Msg::Flush(ack)) => {
                        self.flush();
                        dirty = false;
                        let _ = ack.send(());
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.flush();
                        return;
                    }
                }
            }
            if dirty && (!got || last_flush.elapsed() >= FLUSH_EVERY) {
                self.flush();
                dirty = false;
                last_flush = Instant::now();
            }
            if !got {
                self.today = day_of(SystemTime::now());
                self.rotate_if_needed(0);
                std::thread::sleep(POLL_EVERY);
            }
        }
    }

    fn write(&mut self, line: &str) {
        // The clock is read for the daily rotation once every 1,024 lines, not per line.
        self.since_clock += 1;
        if self.since_clock >= 1024 {
            self.since_clock = 0;
            self.today = day_of(SystemTime::now());
        }
        self.rotate_if_needed(line.len() as u64 + 1);
        let ok = self
            .out
            .write_all(line.as_bytes())
            .and_then(|_| self.out.write_all(b"\n"));
        if ok.is_ok() {
            self.size += line.len() as u64 + 1;
        }
        self.note(ok, 1);
    }

    fn flush(&mut self) {
        let flushed = self.out.flush();
        self.note(flushed, 0);
    }

    /// Counts lines a failed write lost, and says so when writes start and stop failing (a
    /// full disk would otherwise put an error line in the process log for every request).
    fn note(&mut self, result: std::io::Result<()>, lines: u64) {
        match result {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::warn!(
                    file = %self.config.path.display(),
                    lost = self.failed.load(Ordering::Relaxed),
                    "access log writes succeed again"
                );
            }
            Ok(()) => {}
            Err(e) => {
                self.failed.fetch_add(lines, Ordering::Relaxed);
                if !self.failing {
                    self.failing = true;
                    tracing::error!(
                        file = %self.config.path.display(),
                        "access log write failed: {e}; lines are lost until writes succeed \
                         again (menshen_access_log_write_failed_total counts them)"
                    );
                }
            }
        }
    }

    fn rotate_if_needed(&mut self, incoming: u64) {
        let today = self.today;
        let too_big = self.size > 0 && self.size + incoming > self.config.max_file_bytes;
        if today == self.day && !too_big {
            return;
        }
        if let Err(e) = self.rotate() {
            tracing::error!(file = %self.config.path.display(), "access log rotation failed: {e}");
        }
        self.day = today;
        self.remove_expired();
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let (y, m, d) = civil_from_days(self.day as i64);
        let base = format!("{}.{y:04}-{m:02}-{d:02}", self.config.path.display());
        let mut target = PathBuf::from(&base);
        let mut n = 1;
        while target.exists() {
            target = PathBuf::from(format!("{base}.{n}"));
            n += 1;
        }
        std::fs::rename(&self.config.path, &target)?;
        self.out = BufWriter::with_capacity(256 * 1024, open(&self.config.path)?);
        self.size = 0;
        Ok(())
    }

    /// Removes rotated files (`NAME.*` beside the live file) older than the retention.
    fn remove_expired(&self) {
        let Some(dir) = self.config.path.parent() else {
            return;
        };
        let Some(name) = self.config.path.file_name().and_then(|n| n.to_str()) else {
            return;
        };
        let prefix = format!("{name}.");
        let keep = Duration::from_secs(u64::from(self.config.retention_days) * 86_400);
        let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        }) else {
            return;
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(fname) = file_name.to_str() else {
                continue;
            };
            if !fname.starts_with(&prefix) {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > keep);
            if old {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => {
                        tracing::info!(file = %entry.path().display(), "removed access log past retention")
                    }
                    Err(e) => {
                        tracing::warn!(file = %entry.path().display(), "cannot remove old access log: {e}")
                    }
                }
            }
        }
    }
}

fn day_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Appends `t` as RFC 3339 UTC with milliseconds, e.g. `2026-11-27T01:24:11.133+00:00`.
pub fn push_rfc3339_millis(out: &mut String, t: SystemTime) {
    thread_local! {
        /// The last second formatted on this thread, with its text.
        static LAST: std::cell::Cell<(u64, [u8; 29])> = const {
            std::cell::Cell::new((u64::MAX, [0; 29]))
        };
    }
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (last, mut text) = LAST.get();
    if last == secs {
        let ms = since.subsec_millis();
        text[20] = b'0' + (ms / 100) as u8;
        text[21] = b'0' + (ms / 10 % 10) as u8;
        text[22] = b'0' + (ms % 10) as u8;
        out.push_str(std::str::from_utf8(&text).unwrap_or_default());
        return;
    }
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    // Digit by digit: this runs for every request.
    let mut text = *b"0000-00-00T00:00:00.000+00:00";
    let mut put = |at: usize, width: usize, mut n: u64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, y.clamp(0, 9999) as u64);
    put(5, 2, u64::from(m));
    put(8, 2, u64::from(d));
    put(11, 2, rem / 3600);
    put(14, 2, rem / 60 % 60);
    put(17, 2, rem % 60);
    put(20, 3, u64::from(since.subsec_millis()));
    LAST.set((secs, text));
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

/// Appends `s` as a JSON string (quotes included).
pub fn push_json_str(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_json_strings() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_784), (2026, 11, 27));
        let mut s = String::new();
        push_rfc3339_millis(
            &mut s,
            UNIX_EPOCH + Duration::from_millis(1_795_742_651_133),
        );
        assert_eq!(s, "2026-11-27T01:24:11.133+00:00");
        // The same second again (the cached text, new milliseconds), then the next one.
        for (ms, text) in [
            (1_795_742_651_007, "2026-11-27T01:24:11.007+00:00"),
            (1_795_742_652_999, "2026-11-27T01:24:12.999+00:00"),
        ] {
            let mut s = String::new();
            push_rfc3339_millis(&mut s, UNIX_EPOCH + Duration::from_millis(ms));
            assert_eq!(s, text);
        }
        let mut j = String::new();
        push_json_str(&mut j, "a\"b\\c\n\u{1}门");
        assert_eq!(j, "\"a\\\"b\\\\c\\n\\u0001门\"");
        let mut plain = String::new();
        push_json_str(&mut plain, "/shop/门?q=1");
        assert_eq!(plain, "\"/shop/门?q=1\"");
    }

    #[test]
    fn lines_a_full_disk_refuses_are_counted() {
        // /dev/full refuses every write with ENOSPC, as a full disk does.
        let log = AccessLog::start(AccessLogConfig {
            path: "/dev/full".into(),
            retention_days: 180,
            max_file_bytes: u64::MAX,
            buffer_lines: 100_000,
        })
        .expect("start");
        let line = "x".repeat(200);
        for _ in 0..5_000 {
            log.log(line.clone());
        }
        log.flush(Duration::from_secs(5));
        let failed = log.failed.load(Ordering::Relaxed);
        // What fits in the writer's buffer may still go out later; the rest is counted lost.
        assert!(failed > 3_000, "{failed} lines counted lost");
        assert_eq!(log.dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn writes_rotates_by_size_and_flushes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let log = AccessLog::start(AccessLogConfig {
            path: path.clone(),
            retention_days: 180,
            max_file_bytes: 64,
            buffer_lines: 16,
        })
        .expect("start");
        for i in 0..6 {
            log.log(format!("{{\"n\":{i},\"pad\":\"xxxxxxxxxxxxxxxxxxxx\"}}"));
        }
        log.flush(Duration::from_secs(5));
        let live = std::fs::read_to_string(&path).expect("live file");
        let rotated: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("access.log."))
            .collect();
        assert!(!rotated.is_empty(), "size rotation happened");
        assert!(
            live.ends_with("\"n\":5,\"pad\":\"xxxxxxxxxxxxxxxxxxxx\"}\n"),
            "{live}"
        );
    }

    #[test]
    fn rotated_files_past_retention_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let old = dir.path().join("access.log.2026-01-01");
        let recent = dir.path().join("access.log.2026-11-01");
        let unrelated = dir.path().join("other.log.2020-01-01");
        for f in [&old, &recent, &unrelated] {
            std::fs::write(f, "x\n").expect("write");
        }
        let age = |days: u64| SystemTime::now() - Duration::from_secs(days * 86_400);
        let set = |f: &Path, t: SystemTime| {
            File::options()
                .write(true)
                .open(f)
                .expect("open")
                .set_modified(t)
                .expect("mtime");
        };
        set(&old, age(200));
        set(&recent, age(30));
        set(&unrelated, age(400));
        let log = AccessLog::start(AccessLogConfig {
            path,
            retention_days: 180,
            max_file_bytes: 1 << 20,
            buffer_lines: 16,
        })
        .expect("start");
        log.flush(Duration::from_secs(5));
        assert!(!old.exists(), "older than 180 days: removed");
        assert!(recent.exists(), "within retention: kept");
        assert!(unrelated.exists(), "not ours: kept");
    }
}
