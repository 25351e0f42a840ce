//! An upstream's retry budget (Envoy's): how many of its requests may be retrying at once,
//! asked by `proxy::attempts` after `route::retry` decided a retry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// An upstream's retry budget: retries in flight at most `percent` of its requests in flight,
/// or `min_concurrent`, whichever is more (Envoy's retry budget), so a failing backend is not
/// hammered by every request trying again at once.
#[derive(Debug)]
pub struct RetryBudget {
    percent: u32,
    min_concurrent: usize,
    active: Arc<AtomicUsize>,
    retrying: Arc<AtomicUsize>,
}

/// A request in flight to an upstream, counted until it is dropped.
#[derive(Debug)]
pub struct Active(Arc<AtomicUsize>);

/// A retry in flight, counted against the budget until it is dropped.
#[derive(Debug)]
pub struct RetryTicket(Arc<AtomicUsize>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for RetryTicket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RetryBudget {
    /// A budget of `percent` of the requests in flight, at least `min_concurrent`.
    pub fn new(percent: u32, min_concurrent: usize) -> Self {
        Self {
            percent,
            min_concurrent,
            active: Arc::default(),
            retrying: Arc::default(),
        }
    }

    /// Counts a request in flight until the returned guard is dropped.
    pub fn start(&self) -> Active {
        self.active.fetch_add(1, Ordering::Relaxed);
        Active(self.active.clone())
    }

    /// A retry's ticket, or `None` when the budget is spent.
    pub fn try_retry(&self) -> Option<RetryTicket> {
        let active = self.active.load(Ordering::Relaxed);
        let allowed = (active * self.percent as usize / 100).max(self.min_concurrent);
        let taken = self.retrying.fetch_add(1, Ordering::Relaxed);
        let ticket = RetryTicket(self.retrying.clone());
        (taken < allowed).then_some(ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_allows_a_share_of_requests_in_flight_and_a_minimum() {
        let budget = RetryBudget::new(20, 1);
        let requests: Vec<Active> = (0..10).map(|_| budget.start()).collect();
        let first = budget.try_retry().expect("20% of 10");
        let second = budget.try_retry().expect("20% of 10");
        assert!(budget.try_retry().is_none(), "a third is over 20% of 10");
        drop(first);
        assert!(
            budget.try_retry().is_some(),
            "a ticket given back is free again"
        );
        drop((second, requests));
        let lone = RetryBudget::new(20, 1);
        let _one = lone.start();
        assert!(lone.try_retry().is_some(), "the minimum");
        assert!(RetryBudget::new(0, 0).try_retry().is_none());
    }
}
