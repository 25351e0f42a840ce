//! The chain that makes a log tamper-evident: every line ends with
//! `,"w":"<writer>","seq":<n>,"chain":"<hex>"}`, where `chain` is HMAC-SHA256 under a key only
//! the operator holds, over the writer's previous chain value and the line up to `,"chain"`.
//!
//! Each writer (one process's log thread) keeps its own chain, starting at an `"event":"opened"`
//! line with `seq` 0 chained from zeros, so a binary upgrade's two processes can share a file. A
//! line changed, removed or moved breaks its writer's chain there; `verify` names it. Sealing
//! rotated files is `seal`'s job.

use std::io::Write;
use std::path::{Path, PathBuf};

use ring::hmac;

/// Bytes of a chain value.
pub const CHAIN_BYTES: usize = 32;
/// Bytes of a key (`menshen logs key` writes this many, as hex).
pub const KEY_BYTES: usize = 32;
const KEY_HEX_DIGITS: usize = KEY_BYTES * 2;

const CHAIN_KEY: &str = ",\"chain\":\"";

/// The secret chain values and manifests are keyed with, and the file it came from.
#[derive(Clone, PartialEq, Eq)]
pub struct ChainKey {
    /// The key file.
    pub file: PathBuf,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChainKey({})", self.file.display())
    }
}

/// Why a key file cannot be used; the text is the fix.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No such file.
    #[error(
        "{0} does not exist: make one with `menshen logs key {0}` (and keep a copy where the logs \
         will be verified)"
    )]
    Missing(String),
    /// The file cannot be read.
    #[error("{0}: cannot read: {1}")]
    Unreadable(String, std::io::Error),
    /// The content is not a key.
    #[error(
        "{0}: not a key: expected {KEY_BYTES} bytes as {KEY_HEX_DIGITS} hex digits on one line; \
         make one with `menshen logs key {0}`"
    )]
    Malformed(String),
}

impl ChainKey {
    /// Reads a key file: `KEY_BYTES` bytes as hex, surrounding whitespace ignored.
    pub fn load(file: &Path) -> Result<ChainKey, KeyError> {
        let name = file.display().to_string();
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyError::Missing(name))
            }
            Err(e) => return Err(KeyError::Unreadable(name, e)),
        };
        match from_hex(text.trim()) {
            Some(bytes) if bytes.len() == KEY_BYTES => Ok(ChainKey {
                file: file.to_path_buf(),
                bytes,
            }),
            _ => Err(KeyError::Malformed(name)),
        }
    }

    /// A fresh random key, as the text of a key file.
    pub fn generate() -> std::io::Result<String> {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; KEY_BYTES];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| std::io::Error::other("the system's random source failed"))?;
        Ok(format!("{}\n", hex(&bytes)))
    }

    fn hmac(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.bytes)
    }

    /// The chain value of `body` (a line up to `,"chain"`) after `prev`.
    pub fn link(&self, prev: &[u8; CHAIN_BYTES], body: &[u8]) -> [u8; CHAIN_BYTES] {
        let mut ctx = hmac::Context::with_key(&self.hmac());
        ctx.update(prev);
        ctx.update(body);
        let mut out = [0u8; CHAIN_BYTES];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// The MAC of a manifest's text (domain-separated from line chain values).
    pub fn seal(&self, text: &[u8]) -> String {
        let mut ctx = hmac::Context::with_key(&self.hmac());
        ctx.update(b"menshen manifest\n");
        ctx.update(text);
        hex(ctx.sign().as_ref())
    }
}

/// One writer's chain: appends `,"w","seq","chain"` to each line it writes.
pub struct Chainer {
    key: hmac::Key,
    writer: String,
    seq: u64,
    prev: [u8; CHAIN_BYTES],
    /// The `,"w":..,"seq":..` of the line being written, reused across lines.
    tail: String,
}

impl Chainer {
    /// A new chain with a random writer id.
    pub fn new(key: &ChainKey) -> Chainer {
        use ring::rand::SecureRandom;
        let mut id = [0u8; 4];
        // A writer id only has to differ from the other process's during an upgrade.
        let _ = ring::rand::SystemRandom::new().fill(&mut id);
        Chainer {
            key: key.hmac(),
            writer: hex(&id),
            seq: 0,
            prev: [0; CHAIN_BYTES],
            tail: String::with_capacity(48),
        }
    }

    /// Writes `line` (a JSON object, without its newline) with its chain fields and a newline.
    /// Returns the bytes written. A line that is not an object is logged as a JSON string.
    pub fn write(&mut self, out: &mut impl Write, line: &str) -> std::io::Result<u64> {
        let tail = &mut self.tail;
        tail.clear();
        let object = line.starts_with('{') && line.ends_with('}') && line.len() >= 2;
        let head: std::borrow::Cow<'_, str> = if object {
            let inner = &line[..line.len() - 1];
            if inner.len() > 1 {
                tail.push(',');
            }
            inner.into()
        } else {
            let mut s = String::from("{\"text\":");
            super::text::push_json_str(&mut s, line);
            tail.push(',');
            s.into()
        };
        tail.push_str("\"w\":\"");
        tail.push_str(&self.writer);
        tail.push_str("\",\"seq\":");
        tail.push_str(itoa::Buffer::new().format(self.seq));
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&self.prev);
        ctx.update(head.as_bytes());
        ctx.update(tail.as_bytes());
        self.prev.copy_from_slice(ctx.sign().as_ref());
        self.seq += 1;
        let mut chain = [0u8; 2 * CHAIN_BYTES];
        hex_into(&self.prev, &mut chain);
        out.write_all(head.as_bytes())?;
        out.write_all(tail.as_bytes())?;
        out.write_all(CHAIN_KEY.as_bytes())?;
        out.write_all(&chain)?;
        out.write_all(b"\"}\n")?;
        Ok((head.len() + tail.len() + CHAIN_KEY.len() + chain.len() + 3) as u64)
    }
}

/// The chain fields of a written line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chained<'a> {
    /// The line up to `,"chain"`: what the chain value covers (after the previous value).
    pub body: &'a str,
    /// Writer id.
    pub writer: &'a str,
    /// The line's number in its writer's chain (0: the writer's `opened` line).
    pub seq: u64,
    /// Its chain value.
    pub chain: [u8; CHAIN_BYTES],
}

impl<'a> Chained<'a> {
    /// Splits a line written by [`Chainer::write`] (without its newline); `None` if it is not one.
    pub fn parse(line: &'a str) -> Option<Chained<'a>> {
        let at = line.rfind(CHAIN_KEY)?;
        let body = &line[..at];
        let rest = line[at + CHAIN_KEY.len()..].strip_suffix("\"}")?;
        let chain = hex_array(rest)?;
        let (before, seq) = body.rsplit_once(",\"seq\":")?;
        let seq = seq.parse().ok()?;
        let at = before.rfind("\"w\":\"")?;
        let writer = before[at + 5..].strip_suffix('"')?;
        Some(Chained {
            body,
            writer,
            seq,
            chain,
        })
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut digits = vec![0u8; bytes.len() * 2];
    hex_into(bytes, &mut digits);
    digits.into_iter().map(char::from).collect()
}

/// Lower-case hex of `bytes` into `out`, which holds two digits per byte.
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 15)];
    }
}

/// The `N` bytes of `2 * N` hex digits, without allocating (read for every line of a file).
fn hex_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    let digits = s.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// Bytes of hex text; `None` if it is not hex.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dir: &Path) -> ChainKey {
        let file = dir.join("k");
        std::fs::write(&file, ChainKey::generate().expect("generate")).expect("write");
        ChainKey::load(&file).expect("load")
    }

    #[test]
    fn lines_chain_and_parse_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = key(dir.path());
        let mut chainer = Chainer::new(&key);
        let mut out = Vec::new();
        let mut written = 0;
        for line in ["{\"ts\":\"x\",\"n\":1}", "{}", "not json"] {
            written += chainer.write(&mut out, line).expect("write");
        }
        assert_eq!(written as usize, out.len());
        let text = String::from_utf8(out).expect("utf-8");
        let mut prev = [0u8; CHAIN_BYTES];
        for (i, line) in text.lines().enumerate() {
            let c = Chained::parse(line).expect(line);
            assert_eq!(c.seq, i as u64);
            assert_eq!(key.link(&prev, c.body.as_bytes()), c.chain, "{line}");
            prev = c.chain;
        }
        assert!(text
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("{\"w\":")));
        assert!(text.contains("{\"text\":\"not json\","));
    }

    #[test]
    fn key_files_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("none.key");
        let e = ChainKey::load(&missing).expect_err("missing").to_string();
        assert!(
            e.contains("does not exist: make one with `menshen logs key"),
            "{e}"
        );
        let short = dir.path().join("short.key");
        std::fs::write(&short, "abcd\n").expect("write");
        let e = ChainKey::load(&short).expect_err("short").to_string();
        assert!(
            e.contains("not a key: expected 32 bytes as 64 hex digits"),
            "{e}"
        );
    }
}
