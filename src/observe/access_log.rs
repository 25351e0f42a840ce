//! The access log: one JSON object per request per line, written off the data path.
//!
//! Requests hand finished lines to a bounded channel; one writer thread owns the file. It flushes
//! at least every second and on shutdown, rotates daily and by size (the old file gets a
//! `.YYYY-MM-DD[.N]` suffix), and removes rotated files older than the retention. It polls the
//! channel rather than sleeping on it, so requests never pay for waking it. If the writer
//! falls behind, lines are dropped and counted rather than stalling requests. With a chain key,
//! the writer chains every line (`chain`) and hands rotated files to the sealer (`seal`).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::chain::{ChainKey, Chainer};
use super::retention::Retention;
pub use super::text::{civil_from_days, push_json_str, push_rfc3339_millis};

/// The writer looks for new lines this often when idle.
const POLL_EVERY: Duration = Duration::from_millis(10);
/// Lines reach the file at least this often, however busy.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Where the lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// The file at `path`, rotated, kept for the retention, chained and sealed where configured.
    File,
    /// Standard output (`path = "-"`), for a container's log collector: never rotated, chained
    /// or sealed; keeping it is the collector's business.
    Stdout,
}

/// Where and how the log is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// The live file (with `Destination::Stdout`, `-`).
    pub path: PathBuf,
    /// A file or standard output.
    pub destination: Destination,
    /// How long rotated files are kept.
    pub retention: Retention,
    /// Chain every line and seal rotated files with this key (tamper evidence); none: plain lines.
    pub chain_key: Option<ChainKey>,
    /// The admin audit log beside it (`observe::audit`); none for the audit log itself.
    pub audit_path: Option<PathBuf>,
    /// Ship sealed files to object storage; rotated files are then removed only once shipped.
    pub shipping: Option<super::ship::ShipConfig>,
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
        let file = match config.destination {
            Destination::Stdout => stdout()?,
            Destination::File => {
                if let Some(dir) = config.path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                open(&config.path)?
            }
        };
        let (chain, sealer) = match &config.chain_key {
            Some(key) => (
                Some(Chainer::new(key)),
                Some(super::seal::start_sealer(config.path.clone(), key.clone())?),
            ),
            None => (None, None),
        };
        if let (Some(key), Some(ship)) = (&config.chain_key, &config.shipping) {
            super::ship::start_shipper(config.path.clone(), key.clone(), ship.clone())?;
        }
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
            chain,
            sealer,
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

/// Standard output, as a file the writer owns (buffered by the writer, not by `Stdout`'s lock).
fn stdout() -> std::io::Result<File> {
    use std::os::fd::AsFd;
    Ok(File::from(std::io::stdout().as_fd().try_clone_to_owned()?))
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

struct Writer {
    out: BufWriter<File>,
    chain: Option<Chainer>,
    /// Rotated files go here to be sealed.
    sealer: Option<mpsc::Sender<PathBuf>>,
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
        if self.config.destination == Destination::File {
            super::retention::remove_expired(
                &self.config.path,
                self.config.retention,
                self.config.shipping.is_some(),
            );
        }
        if let Some(key) = &self.config.chain_key {
            // The chain of this writer starts here; `sealed` names the last sealed file's index,
            // so that dropping the newest sealed files shows too.
            let sealed = super::seal::manifests(&self.config.path, key)
                .into_iter()
                .filter_map(|(_, m)| m.ok().map(|m| m.index))
                .max()
                .unwrap_or(0);
            let mut line = String::from("{\"ts\":\"");
            push_rfc3339_millis(&mut line, SystemTime::now());
            line.push_str(&format!(
                "\",\"event\":\"opened\",\"pid\":{},\"sealed\":{sealed}}}",
                std::process::id()
            ));
            self.write(&line);
        }
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
                if self.config.destination == Destination::File {
                    self.reopen_if_moved();
                    self.rotate_if_needed(0);
                }
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
        if self.config.destination == Destination::File {
            self.rotate_if_needed(line.len() as u64 + 1);
        }
        let ok = match &mut self.chain {
            Some(chain) => chain.write(&mut self.out, line),
            None => self
                .out
                .write_all(line.as_bytes())
                .and_then(|_| self.out.write_all(b"\n"))
                .map(|_| line.len() as u64 + 1),
        };
        let ok = ok.map(|n| self.size += n);
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
        super::retention::remove_expired(
            &self.config.path,
            self.config.retention,
            self.config.shipping.is_some(),
        );
    }

    /// Another process's writer (the other side of a binary upgrade) rotated the file: append
    /// to the new one rather than to the file it sealed.
    fn reopen_if_moved(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let ours = self.out.get_ref().metadata().map(|m| (m.dev(), m.ino()));
        let named = std::fs::metadata(&self.config.path).map(|m| (m.dev(), m.ino()));
        if matches!((ours, named), (Ok(a), Ok(b)) if a == b) {
            return;
        }
        let _ = self.out.flush();
        match open(&self.config.path) {
            Ok(file) => {
                self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
                self.out = BufWriter::with_capacity(256 * 1024, file);
            }
            Err(e) => {
                tracing::error!(file = %self.config.path.display(), "cannot reopen access log: {e}")
            }
        }
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let (y, m, d) = civil_from_days(self.day as i64);
        let base = format!("{}.{y:04}-{m:02}-{d:02}", self.config.path.display());
        let mut target = PathBuf::from(&base);
        let mut n = 1;
        // A name is taken by a rotated file, plain or compressed, or by its manifest.
        let taken =
            |t: &PathBuf| super::compress::exists(t) || super::seal::manifest_path(t).exists();
        while taken(&target) {
            target = PathBuf::from(format!("{base}.{n}"));
            n += 1;
        }
        std::fs::rename(&self.config.path, &target)?;
        self.out = BufWriter::with_capacity(256 * 1024, open(&self.config.path)?);
        self.size = 0;
        if let Some(sealer) = &self.sealer {
            let _ = sealer.send(target);
        }
        Ok(())
    }
}

fn day_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_a_full_disk_refuses_are_counted() {
        // /dev/full refuses every write with ENOSPC, as a full disk does.
        let log = AccessLog::start(AccessLogConfig {
            path: "/dev/full".into(),
            destination: Destination::File,
            retention: Retention::default(),
            chain_key: None,
            audit_path: None,
            shipping: None,
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
            destination: Destination::File,
            retention: Retention::default(),
            chain_key: None,
            audit_path: None,
            shipping: None,
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
}
