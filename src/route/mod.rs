//! Where a request goes: the host/path router, upstream pools, and backend discovery.

pub mod dns;
pub mod h2_pool;
pub mod pool;
pub mod retry;
pub mod retry_budget;
pub mod router;
pub mod settings;
pub mod upstream;
pub mod upstream_conn;
pub mod upstream_metrics;

pub use router::{Action, Router, Site};
pub use upstream::Upstream;
