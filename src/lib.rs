//! menshen (门神): an edge reverse proxy for the mainland-China edge.
//!
//! TLS is terminated only with certificates that chain to approved CAs (`tls`), requests are
//! routed by Host and path to pools of backends (`route`, `proxy`), and certificates and
//! configuration hot-reload as one snapshot (`config`, `snapshot`, `reload`).

pub mod admin;
pub mod cache;
pub mod certs;
pub mod cli;
pub mod cli_logs;
pub mod config;
#[doc(hidden)]
pub mod fuzz;
pub mod observe;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod route;
pub mod semantics;
pub mod server;
pub mod snapshot;
pub mod tls;
