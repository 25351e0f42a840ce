//! A stored response: its head's fields and body, when it was stored and how long it stays
//! fresh, and the request it was stored for.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::fresh::Freshness;

/// A stored response.
#[derive(Debug)]
pub struct Object {
    /// Its key (the variant's, when the response varies).
    pub key: String,
    /// Its status.
    pub status: u16,
    /// Its header fields as HTTP/1 lines (`name: value\r\n`), without those of its connection,
    /// its framing and its `Age`.
    pub fields: Bytes,
    /// Its body, whole.
    pub body: Bytes,
    /// When it was stored.
    pub stored_at: Instant,
    /// How long it stays fresh.
    pub fresh: Freshness,
    /// The request it was stored for (what a takedown is matched against).
    pub requested: Requested,
}

/// The Host name and canonical target of the request a response was stored for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requested {
    /// The Host, without its port.
    pub host: Box<str>,
    /// The canonical path and query.
    pub target: Box<str>,
}

impl Requested {
    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// Where an object stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Within its lifetime.
    Fresh,
    /// Stale, within its `stale-while-revalidate` time.
    WhileRevalidate,
    /// Stale, within its `stale-if-error` time only (or beyond both).
    Stale,
}

impl Object {
    /// Its age (RFC 9111 4.2.3) at `now`.
    pub fn age(&self, now: Instant) -> Duration {
        self.fresh.initial_age + now.saturating_duration_since(self.stored_at)
    }

    /// Where it stands at `now`.
    pub fn state(&self, now: Instant) -> State {
        let (age, f) = (self.age(now), &self.fresh);
        if age < f.lifetime {
            State::Fresh
        } else if !f.must_revalidate && age < f.lifetime + f.while_revalidate {
            State::WhileRevalidate
        } else {
            State::Stale
        }
    }

    /// Whether it may answer when the backend fails (`stale-if-error`) at `now`.
    pub fn usable_on_error(&self, now: Instant) -> bool {
        let f = &self.fresh;
        !f.must_revalidate && self.age(now) < f.lifetime + f.if_error
    }

    /// Its fields, as stored.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> + Clone {
        self.fields.split(|&b| b == b'\n').filter_map(|line| {
            let line = line.strip_suffix(b"\r")?;
            let at = line.iter().position(|&b| b == b':')?;
            let name = std::str::from_utf8(&line[..at]).ok()?;
            Some((name, line[at + 1..].trim_ascii_start()))
        })
    }

    /// The value of its first field `name`.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        let mut all = self.fields();
        all.find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Bytes it holds (key, fields, body): what the store counts.
    pub(super) fn size(&self) -> usize {
        self.key.len() + self.fields.len() + self.body.len()
    }
}
