//! The one piece of hot state: everything a request or a handshake needs, swapped whole.
//!
//! `config::compile` builds a [`Snapshot`]; `reload` publishes it into the [`SharedSnapshot`];
//! the proxy, the certificate resolver and the SNI gate read it with one `ArcSwap::load`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::file::{FileConfig, ListenerSection};
use crate::observe::access_log::AccessLogConfig;
use crate::policy::Policy;
use crate::route::{Router, Upstream};
use crate::tls::{ApprovedRoots, CertStore, TlsError};

/// The current snapshot, shared by every worker.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

/// A complete, validated configuration with its certificates.
#[derive(Debug)]
pub struct Snapshot {
    /// The config file it was loaded from.
    pub config_path: PathBuf,
    /// The parsed file, kept to compare with the next load.
    pub file: FileConfig,
    /// Approved roots.
    pub roots: ApprovedRoots,
    /// Served certificates.
    pub certs: CertStore,
    /// Certificate problems of this load (on a reload, pairs whose last good version serves on).
    pub cert_errors: Vec<TlsError>,
    /// Where certificate pairs come from.
    pub cert_sources: crate::tls::store::CertSources,
    /// Files and directories of approved roots.
    pub approved_paths: Vec<PathBuf>,
    /// Sites and routes.
    pub router: Router,
    /// Upstreams by name.
    pub upstreams: HashMap<String, Arc<Upstream>>,
    /// Data-path rules.
    pub policy: Policy,
    /// Access log settings (applied at start; changing them needs a restart).
    pub access_log: Option<AccessLogConfig>,
    /// Request counters per site and route.
    pub counters: crate::observe::metrics::RequestCounters,
    /// Admin listener settings (the address applies at start).
    pub admin: Option<crate::admin::AdminConfig>,
    /// Listener names by port, for the access log.
    pub listener_names: HashMap<u16, Arc<str>>,
    /// Seconds since the epoch when it was built.
    pub loaded_at: i64,
}

impl Snapshot {
    /// The listeners it asks for.
    pub fn listeners(&self) -> &[ListenerSection] {
        &self.file.listeners
    }

    /// Resolves hostnames of upstreams that have not been discovered yet.
    pub async fn discover_upstreams(&self) {
        for up in self.upstreams.values() {
            if up.backend_count() == 0 {
                if let Err(e) = up.discover().await {
                    tracing::warn!(upstream = %up.name, error = %e, "backend discovery failed");
                }
            }
        }
    }

    /// Starts health checks and DNS refreshes of upstreams new in this snapshot.
    pub fn start_background(&self, rt: &tokio::runtime::Handle) {
        for up in self.upstreams.values() {
            up.start_background(rt);
        }
    }

    /// Certificates expiring within `tls.expiry_warning`, logged as warnings.
    pub fn warn_expiring(&self) {
        let days = self
            .file
            .tls
            .as_ref()
            .map_or(0, |t| t.expiry_warning_days()) as i64;
        let now = crate::tls::cert::unix_now();
        for cert in self.certs.certs() {
            let left = cert.info.days_left(now);
            if left < days {
                tracing::warn!(
                    notify = "expiring",
                    file = %cert.info.file.display(),
                    hosts = ?cert.info.hosts,
                    days_left = left,
                    not_after = %crate::tls::cert::format_time(cert.info.not_after),
                    "certificate expires soon; renew it and drop the new files in place"
                );
            }
        }
    }
}
