//! How many requests the process is serving, on every engine, and how many client connections
//! it holds open: a draining process (SIGTERM, or the old one of a binary upgrade) exits once
//! both are zero, not at the end of the grace period.

use std::sync::atomic::{AtomicUsize, Ordering};

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static OPEN: AtomicUsize = AtomicUsize::new(0);

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
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Requests being served now.
pub fn count() -> usize {
    IN_FLIGHT.load(Ordering::Relaxed)
}

/// One client connection held open (its HTTP engine has it): counted while it lives.
#[derive(Debug)]
pub struct Open(());

impl Open {
    /// Counts a connection handed to an engine now.
    pub fn start() -> Self {
        OPEN.fetch_add(1, Ordering::Relaxed);
        Open(())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Client connections open now.
pub fn open_connections() -> usize {
    OPEN.load(Ordering::Relaxed)
}
