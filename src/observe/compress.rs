//! Compressing sealed log files: once a rotated file has its manifest, it is rewritten as
//! `FILE.zst` (zstd level 1, written aside, synced, renamed) and the plain file removed. Six months of
//! access log take about a tenth of the disk, and the shipper uploads the compressed file.
//!
//! The manifest keeps describing the plain content (its lines, size and SHA-256), which
//! [`open`] reads back through the decompressor, so `menshen logs verify` checks a compressed
//! file, here or downloaded from the object store, as it checks a plain one.

use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

/// The suffix of a compressed rotated file.
pub const SUFFIX: &str = ".zst";
/// zstd's fastest level: a JSON log compresses about 15 times at some 800 MB/s of one core
/// (gzip -6 manages 12 times at 130 MB/s), so compressing stays a few per cent of the CPU the
/// requests that wrote the lines took.
const LEVEL: i32 = 1;

/// The path a rotated file was sealed under: `file` without `.zst`. Its manifest and shipping
/// marker are named after it.
pub fn plain(file: &Path) -> PathBuf {
    match file.to_str().and_then(|s| s.strip_suffix(SUFFIX)) {
        Some(p) => PathBuf::from(p),
        None => file.to_path_buf(),
    }
}

/// The compressed file of a rotated file.
pub fn compressed(file: &Path) -> PathBuf {
    let mut name = plain(file).into_os_string();
    name.push(SUFFIX);
    PathBuf::from(name)
}

/// Whether the rotated file `plain` is there, plain or compressed.
pub fn exists(plain: &Path) -> bool {
    plain.exists() || compressed(plain).exists()
}

/// Whether `file` is a compressed rotated file.
pub fn is_compressed(file: &Path) -> bool {
    file.to_str().is_some_and(|s| s.ends_with(SUFFIX))
}

/// A reader of a rotated file's plain content, decompressing a `.zst` one.
pub fn open(file: &Path) -> io::Result<Box<dyn Read + Send>> {
    let f = std::fs::File::open(file)?;
    Ok(if is_compressed(file) {
        Box::new(zstd::stream::read::Decoder::with_buffer(
            BufReader::with_capacity(256 * 1024, f),
        )?)
    } else {
        Box::new(f)
    })
}

/// Compresses the sealed rotated file `file` to `file.zst` and removes `file`. The compressed
/// file keeps the plain one's modification time, which retention counts from. Done already (by
/// the other process of a binary upgrade, or the shipper retrying) is fine; each writer has a
/// temporary file of its own.
pub fn compress(file: &Path) -> io::Result<PathBuf> {
    let target = compressed(file);
    let source = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound && target.exists() => return Ok(target),
        Err(e) => return Err(e),
    };
    // The process id and a per-process count: the sealer and the shipper of one process, or
    // the two processes of a binary upgrade, never write the same temporary file.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp = target.clone().into_os_string();
    tmp.push(format!(".{}-{n}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let modified = source.metadata()?.modified()?;
        let mut out = zstd::stream::write::Encoder::new(std::fs::File::create(&tmp)?, LEVEL)?;
        io::copy(&mut BufReader::with_capacity(256 * 1024, source), &mut out)?;
        let out = out.finish()?;
        out.set_modified(modified)?;
        out.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        // The rename is on disk before the plain file goes.
        match target.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => std::fs::File::open(dir)?.sync_all(),
            None => Ok(()),
        }
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    match std::fs::remove_file(file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compressed_file_reads_back_as_its_plain_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("access.log.2026-12-07");
        let text = "line one\nline two\n".repeat(1000);
        std::fs::write(&file, &text).expect("write");
        let written = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
        let f = std::fs::File::options()
            .write(true)
            .open(&file)
            .expect("open");
        f.set_modified(written).expect("mtime");
        let gz = compress(&file).expect("compress");
        assert_eq!(gz, dir.path().join("access.log.2026-12-07.zst"));
        assert!(!file.exists(), "the plain file is removed");
        let mtime = std::fs::metadata(&gz)
            .and_then(|m| m.modified())
            .expect("mtime");
        assert_eq!(
            mtime, written,
            "retention counts from when the log was written"
        );
        assert!(std::fs::metadata(&gz).expect("gz").len() < text.len() as u64 / 10);
        let mut back = String::new();
        open(&gz)
            .expect("open")
            .read_to_string(&mut back)
            .expect("read");
        assert_eq!(back, text);
        assert_eq!(plain(&gz), file);
        assert!(exists(&file));
        // Again (the other process of an upgrade got there first): nothing to do.
        assert_eq!(compress(&file).expect("again"), gz);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }
}
