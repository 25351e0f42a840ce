//! What the edge cache did for a request, as its `Cache-Status` (RFC 9211), `X-Cache` and the
//! access log's `cache` say it.

/// What the cache did for a request: its `Cache-Status` (RFC 9211), `X-Cache` and the access
/// log's `cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered from the store.
    Hit,
    /// Not in the store (or stale): forwarded.
    Miss,
    /// Not looked up (a method or request the cache does not answer): forwarded.
    Bypass,
}

impl Outcome {
    /// The access log's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Bypass => "bypass",
        }
    }

    /// Its `Cache-Status` value.
    pub fn cache_status(self) -> &'static [u8] {
        match self {
            Outcome::Hit => b"menshen; hit",
            Outcome::Miss => b"menshen; fwd=miss",
            Outcome::Bypass => b"menshen; fwd=bypass",
        }
    }

    /// Its `X-Cache` value.
    pub fn x_cache(self) -> &'static [u8] {
        match self {
            Outcome::Hit => b"HIT",
            Outcome::Miss => b"MISS",
            Outcome::Bypass => b"BYPASS",
        }
    }
}
