//! What the edge cache did for a request, as its `Cache-Status` (RFC 9211), `X-Cache` and the
//! access log's `cache` say it.

/// What the cache did for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered from the store, fresh.
    Hit,
    /// Not in the store: forwarded.
    Miss,
    /// Stored but stale: forwarded with its validators.
    Expired,
    /// Stale, and the backend's `304` made it fresh again: answered from the store.
    Revalidated,
    /// Answered stale: another request revalidates it (`stale-while-revalidate`), or the
    /// backend failed (`stale-if-error`).
    Stale,
    /// Not looked up (a method, a body or `Authorization`): forwarded.
    Bypass,
}

impl Outcome {
    /// The access log's word for it (and the metrics' `result`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Expired => "expired",
            Outcome::Revalidated => "revalidated",
            Outcome::Stale => "stale",
            Outcome::Bypass => "bypass",
        }
    }

    /// Its `Cache-Status` value.
    pub fn cache_status(self) -> &'static [u8] {
        match self {
            Outcome::Hit => b"menshen; hit",
            Outcome::Miss => b"menshen; fwd=miss",
            Outcome::Expired => b"menshen; fwd=stale",
            Outcome::Revalidated => b"menshen; fwd=stale; fwd-status=304",
            Outcome::Stale => b"menshen; hit; detail=stale",
            Outcome::Bypass => b"menshen; fwd=bypass",
        }
    }

    /// Its `X-Cache` value.
    pub fn x_cache(self) -> &'static [u8] {
        match self {
            Outcome::Hit => b"HIT",
            Outcome::Miss | Outcome::Expired => b"MISS",
            Outcome::Revalidated => b"REVALIDATED",
            Outcome::Stale => b"STALE",
            Outcome::Bypass => b"BYPASS",
        }
    }
}
