//! menshen patch (see PATCH.md): per-thread pools of the buffers idle connections give up.
//!
//! A connection waiting for its peer frees its read, write and HPACK scratch buffers so that
//! thousands of quiet connections hold no buffer memory. Freeing them to the allocator on every
//! wait cost busy connections CPU (mimalloc returned and took back whole pages on each
//! request), so they go to a small pool per thread instead, from which the next connection on
//! the thread that needs one takes it.

use bytes::BytesMut;
use std::cell::RefCell;

/// Which buffer: each kind has its own pool (their sizes differ).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Read = 0,
    Write = 1,
    Hpack = 2,
}

impl Kind {
    /// The largest buffer kept: one grown far beyond its usual size (a large header block, or
    /// a read buffer still sharing its allocation with frames in use) is freed instead.
    fn max_capacity(self) -> usize {
        match self {
            Kind::Read => 32 * 1024,
            Kind::Write => 64 * 1024,
            Kind::Hpack => 16 * 1024,
        }
    }
}

/// Buffers kept per kind and thread; beyond them, a waiting connection's buffer is freed.
const KEEP: usize = 32;

std::thread_local! {
    static POOLS: RefCell<[Vec<BytesMut>; 3]> =
        const { RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// Keeps `buf` (empty, with capacity) for the next `take` of its kind on this thread.
pub(crate) fn put(kind: Kind, buf: BytesMut) {
    if !buf.is_empty() || buf.capacity() == 0 || buf.capacity() > kind.max_capacity() {
        return;
    }
    let _ = POOLS.try_with(|pools| {
        if let Ok(mut pools) = pools.try_borrow_mut() {
            let pool = &mut pools[kind as usize];
            if pool.len() < KEEP {
                pool.push(buf);
            }
        }
    });
}

/// A buffer of `kind` given up earlier on this thread, or a new one; either way with room for
/// `capacity` bytes.
pub(crate) fn take(kind: Kind, capacity: usize) -> BytesMut {
    let mut buf = POOLS
        .try_with(|pools| pools.try_borrow_mut().ok()?[kind as usize].pop())
        .ok()
        .flatten()
        .unwrap_or_default();
    buf.reserve(capacity);
    buf
}
