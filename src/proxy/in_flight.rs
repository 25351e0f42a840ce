//! How many requests the process is serving, on every engine: a SIGTERM waits for this to be
//! zero (and to stay so for a moment), not for the whole grace period.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// When the last request ended, in milliseconds since `epoch()`.
static LAST_DONE_MS: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// One request being served: counted while it lives.
#[derive(Debug)]
pub struct InFlight(());

impl InFlight {
    /// Counts a request that starts now.
    pub fn start() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = epoch().elapsed().as_millis() as u64;
        LAST_DONE_MS.fetch_max(ms, Ordering::Relaxed);
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether no request has been in flight for at least `quiet`.
pub fn idle_for(quiet: Duration) -> bool {
    if IN_FLIGHT.load(Ordering::Relaxed) > 0 {
        return false;
    }
    let last = Duration::from_millis(LAST_DONE_MS.load(Ordering::Relaxed));
    epoch().elapsed().saturating_sub(last) >= quiet
}

/// Requests being served now.
pub fn count() -> usize {
    IN_FLIGHT.load(Ordering::Relaxed)
}
