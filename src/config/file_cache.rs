//! `[cache]`, `[sites.cache]` and a route's `cache = { ... }` of the config file: the serde
//! side of the edge cache (compiled by `config/cache.rs`).

use std::time::Duration;

use serde::Deserialize;

use super::duration;

/// `[cache]`: the process's store (read at start).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheProcessSection {
    /// The memory store's size limit, bytes.
    pub memory_bytes: u64,
    /// How long a request waits for another's fetch of the same object.
    #[serde(deserialize_with = "duration::required")]
    pub lock_timeout: Duration,
    /// The disk tier's directory, relative to the config file (none: memory only).
    pub disk_dir: Option<String>,
    /// The disk tier's size limit, bytes.
    pub disk_bytes: u64,
}

impl Default for CacheProcessSection {
    fn default() -> Self {
        Self {
            memory_bytes: crate::cache::rules::DEFAULT_MEMORY_BYTES,
            lock_timeout: crate::cache::rules::DEFAULT_LOCK_TIMEOUT,
            disk_dir: None,
            disk_bytes: crate::cache::rules::DEFAULT_DISK_BYTES,
        }
    }
}

/// `[sites.cache]` or a route's `cache = { ... }`: a route's keys override its site's, the
/// site's the defaults.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// On (the default when the section is there) or off.
    pub enabled: Option<bool>,
    /// The parts of the request the key is made of: `host`, `path`, `query`.
    pub key: Option<Vec<String>>,
    /// The lifetime of a response that gives none (10% of its age since `Last-Modified`, at
    /// most this).
    #[serde(default, deserialize_with = "duration::optional")]
    pub default_ttl: Option<Duration>,
    /// The lifetime of every storable response, whatever its own says.
    #[serde(default, deserialize_with = "duration::optional")]
    pub force_ttl: Option<Duration>,
    /// Larger responses are passed on, not stored.
    pub max_object_bytes: Option<u64>,
    /// Store responses that set cookies.
    pub store_set_cookie: Option<bool>,
}

/// The key when none is configured.
pub const DEFAULT_CACHE_KEY: [&str; 3] = ["host", "path", "query"];
/// No lifetime for responses that give none: only what says it may be cached is.
pub const DEFAULT_CACHE_TTL: Duration = Duration::ZERO;
/// Objects up to 8 MiB are stored.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 8 * 1024 * 1024;
