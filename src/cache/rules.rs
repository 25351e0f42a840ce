//! The typed cache settings a route carries and the process-wide ones (compiled from
//! `[sites.cache]`, a route's `cache = { ... }` and `[cache]` by `config/cache.rs`).

use std::time::Duration;

/// What a route caches and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// The parts of the request the key is made of (plus the fields a response's `Vary`
    /// names).
    pub key: KeyParts,
    /// The lifetime of a response that gives none (no `max-age`, `s-maxage` or `Expires`):
    /// 10% of its age since `Last-Modified`, at most this; this without `Last-Modified`. Zero:
    /// such responses are not stored.
    pub default_ttl: Duration,
    /// The lifetime of every storable response, whatever its own says.
    pub force_ttl: Option<Duration>,
    /// Larger responses are passed on, not stored.
    pub max_object_bytes: u64,
    /// Store responses that set cookies (off: a `Set-Cookie` response is passed on only).
    pub store_set_cookie: bool,
}

impl Rules {
    /// The rules in a line, for `/status` and `menshen check`.
    pub fn describe(&self) -> String {
        let k = self.key;
        let parts = [("host", k.host), ("path", k.path), ("query", k.query)];
        let key: Vec<&str> = parts.iter().filter(|p| p.1).map(|p| p.0).collect();
        let mut out = format!("key {}", key.join("+"));
        match self.force_ttl {
            Some(ttl) => out.push_str(&format!(", ttl {}s forced", ttl.as_secs())),
            None => out.push_str(&format!(", default ttl {}s", self.default_ttl.as_secs())),
        }
        out.push_str(&format!(", objects up to {} bytes", self.max_object_bytes));
        if self.store_set_cookie {
            out.push_str(", Set-Cookie stored");
        }
        out
    }
}

/// Which parts of the request make the cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyParts {
    /// The canonical Host.
    pub host: bool,
    /// The canonical path.
    pub path: bool,
    /// The query string.
    pub query: bool,
}

/// The process's cache settings (`[cache]`; read at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The memory store's size limit, bytes.
    pub memory_bytes: u64,
    /// How long a request waits for another's fetch of the same object before going to the
    /// backend itself.
    pub lock_timeout: Duration,
    /// The disk tier, if any.
    pub disk: Option<DiskSettings>,
}

/// The disk tier's directory and size limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSettings {
    /// Where its files are.
    pub dir: std::path::PathBuf,
    /// Their size limit, bytes.
    pub bytes: u64,
}

/// `[cache]` when the file has none.
impl Default for Settings {
    fn default() -> Self {
        Self {
            memory_bytes: DEFAULT_MEMORY_BYTES,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            disk: None,
        }
    }
}

/// 256 MiB of memory for cached responses.
pub const DEFAULT_MEMORY_BYTES: u64 = 256 * 1024 * 1024;
/// A fetch across the border takes a few hundred milliseconds; a waiter gives up after this.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// 1 GiB of disk for cached responses.
pub const DEFAULT_DISK_BYTES: u64 = 1024 * 1024 * 1024;
/// The largest object the store holds: TinyUFO weighs entries in 16 bits, here KiB.
pub const MAX_OBJECT_BYTES: u64 = (u16::MAX as u64 - 1) * 1024;
