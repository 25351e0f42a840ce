//! Per-client-IP rate limits: GCRA (a token bucket in one timestamp) in a lock-free table.
//!
//! One table of atomic slots is shared by every limit of the process and survives reloads. A slot
//! is chosen by hashing (limit id, client IP); two clients that collide share a budget, which can
//! only make the limit stricter, never looser. Clients behind carrier-grade NAT share one IP, and
//! so one budget: size limits for the busiest NAT you expect.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Slots of the shared table (8 bytes each: 2 MiB). Enough that tens of thousands of active
/// clients rarely share a slot.
const SLOTS: usize = 1 << 18;

/// The shared state of every rate limit.
pub struct RateTable {
    slots: Box<[AtomicU64]>,
    epoch: Instant,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for RateTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateTable")
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl Default for RateTable {
    fn default() -> Self {
        Self::with_slots(SLOTS)
    }
}

impl RateTable {
    /// A table with `n` slots (a power of two).
    pub fn with_slots(n: usize) -> Self {
        Self {
            slots: (0..n.next_power_of_two())
                .map(|_| AtomicU64::new(0))
                .collect(),
            epoch: Instant::now(),
            hasher: Default::default(),
        }
    }

    fn slot(&self, limit_id: u64, ip: IpAddr) -> &AtomicU64 {
        let i = (self.hasher.hash_one((limit_id, ip)) as usize) & (self.slots.len() - 1);
        &self.slots[i]
    }
}

/// One configured limit: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    id: u64,
    /// Nanoseconds between requests at the sustained rate.
    interval: u64,
    /// How far ahead of now the bucket may run: the burst.
    tolerance: u64,
}

impl RateLimit {
    /// A limit of `per_second` requests per second with `burst` extra. `id` tells limits apart.
    pub fn new(id: u64, per_second: f64, burst: u32) -> Self {
        let interval = (1e9 / per_second.max(1e-6)) as u64;
        Self {
            id,
            interval,
            tolerance: interval.saturating_mul(u64::from(burst)),
        }
    }

    /// Counts one request of `ip`; `Err(retry_after)` when over the limit.
    pub fn check(&self, table: &RateTable, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let slot = table.slot(self.id, ip);
        // Offset by the tolerance so that a fresh (zero) slot starts with a full burst.
        let now = now.duration_since(table.epoch).as_nanos() as u64 + self.tolerance;
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let tat = current.max(now - self.tolerance);
            if tat > now {
                return Err(Duration::from_nanos(tat - now));
            }
            match slot.compare_exchange_weak(
                current,
                tat + self.interval,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_sustained_rate() {
        let table = RateTable::with_slots(1024);
        let limit = RateLimit::new(1, 10.0, 5);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let t0 = Instant::now();
        let allowed = (0..20)
            .filter(|_| limit.check(&table, ip, t0).is_ok())
            .count();
        assert_eq!(allowed, 6, "one plus a burst of five at once");
        let retry = limit.check(&table, ip, t0).expect_err("limited");
        assert!(retry <= Duration::from_millis(100), "{retry:?}");
        // 100 ms later one more request fits.
        assert!(limit
            .check(&table, ip, t0 + Duration::from_millis(101))
            .is_ok());
        // Another client has its own budget.
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        assert!(limit.check(&table, other, t0).is_ok());
    }
}
