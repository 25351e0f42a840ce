//! Observability: process logging, the access log (chained, sealed and verified), metrics, the
//! optional trace export.

pub mod access_log;
pub mod audit;
pub mod cache_metrics;
pub mod chain;
pub mod compress;
mod conn_metrics;
mod labels;
pub mod logging;
pub mod metrics;
pub mod notify;
mod request_counters;
pub mod retention;
pub mod seal;
pub mod ship;
pub mod text;
pub mod trace;
mod trace_export;
pub mod verify;
