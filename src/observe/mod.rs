//! Observability: process logging now; access log and metrics build on it.

pub mod access_log;
pub mod logging;
pub mod metrics;
pub mod notify;
mod request_counters;
