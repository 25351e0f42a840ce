//! Concurrent connections per client IP, counted in a lock-free table of atomic slots.
//!
//! A [`ConnGuard`] holds one count and gives it back when dropped; `proxy::conn` takes it when a
//! connection is accepted and keeps it in the connection's stream, so the count follows the
//! connection's life.
//! Colliding clients share a slot, which can only make the limit stricter.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

const SLOTS: usize = 1 << 16;

/// Connection counts by client IP.
#[derive(Debug)]
pub struct ConnCounter {
    slots: Box<[AtomicU32]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for ConnCounter {
    fn default() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| AtomicU32::new(0)).collect(),
            hasher: Default::default(),
        }
    }
}

/// One counted connection.
#[derive(Debug)]
pub struct ConnGuard {
    counter: Arc<ConnCounter>,
    slot: usize,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.counter.slots[self.slot].fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnCounter {
    /// Counts a connection of `ip`, unless it already holds `max`.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr, max: u32) -> Option<ConnGuard> {
        let slot = (self.hasher.hash_one(ip) as usize) & (SLOTS - 1);
        let count = &self.slots[slot];
        let mut current = count.load(Ordering::Relaxed);
        loop {
            if current >= max {
                return None;
            }
            match count.compare_exchange_weak(
                current,
                current + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(ConnGuard {
                        counter: self.clone(),
                        slot,
                    })
                }
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_up_to_max_and_releases_on_drop() {
        let counter = Arc::new(ConnCounter::default());
        let ip: IpAddr = "198.51.100.1".parse().expect("ip");
        let a = counter.acquire(ip, 2).expect("first");
        let _b = counter.acquire(ip, 2).expect("second");
        assert!(counter.acquire(ip, 2).is_none());
        drop(a);
        assert!(counter.acquire(ip, 2).is_some());
    }
}
