//! The one piece of hot state: everything a request or a handshake needs, swapped whole.
//!
//! The snapshot is the runtime model: sites with their routes and policies, upstreams,
//! the rule chain, listeners, certificates and the process settings (`settings.rs`), all typed
//! and compiled. `config::compile` builds one from the file (nothing here knows the file's
//! shape); `reload` publishes it into the [`SharedSnapshot`]; the proxy, the certificate
//! resolver and the SNI gate read it with one `ArcSwap::load`.

mod settings;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::observe::access_log::AccessLogConfig;
use crate::observe::notify::NotifyEvent;
use crate::policy::{Policy, SitePolicy};
use crate::route::{Router, Upstream};
use crate::tls::client_auth::ClientAuth;
use crate::tls::{ApprovedRoots, CertStore, TlsError};

pub use settings::{
    AdminConfig, CertPolicy, DnsSettings, Listener, ReloadSettings, ServerSettings,
};

/// The current snapshot, shared by every worker.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

/// A complete, validated configuration with its certificates.
#[derive(Debug)]
pub struct Snapshot {
    /// The config file it was loaded from.
    pub config_path: PathBuf,
    /// Where the proxy listens (a change applies at the next start).
    pub listeners: Vec<Listener>,
    /// Threads, grace period, upgrade files (applied at start).
    pub server: ServerSettings,
    /// How changes on disk are noticed (applied at start).
    pub reload: ReloadSettings,
    /// How backend hostnames are resolved.
    pub dns: DnsSettings,
    /// Expiry warnings and strictness about rejected certificate files.
    pub cert_policy: CertPolicy,
    /// Approved roots.
    pub roots: ApprovedRoots,
    /// Served certificates.
    pub certs: CertStore,
    /// How their OCSP responses are fetched.
    pub ocsp: crate::tls::ocsp::OcspSettings,
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
    /// Error pages for the statuses a site has none of, and for requests of no site.
    pub error_pages: crate::semantics::error_pages::ErrorPages,
    /// The edge cache's store (applied at start; changing them needs a restart).
    pub cache: crate::cache::Settings,
    /// Access log settings (applied at start; changing them needs a restart).
    pub access_log: Option<AccessLogConfig>,
    /// Trace export settings (applied at start; changing them needs a restart).
    pub otel: Option<crate::observe::trace::TraceConfig>,
    /// Request counters per site and route.
    pub counters: crate::observe::metrics::RequestCounters,
    /// Admin listener settings (the address applies at start).
    pub admin: Option<AdminConfig>,
    /// Listener names by port, for the access log.
    pub listener_names: HashMap<u16, Arc<str>>,
    /// Seconds since the epoch when it was built.
    pub loaded_at: i64,
}

impl crate::tls::resolver::Served for Snapshot {
    fn certs(&self) -> &CertStore {
        &self.certs
    }

    fn protocol(&self) -> &Arc<crate::tls::provider::TlsProtocol> {
        &self.policy.tls
    }

    fn client_auths(&self) -> &[Arc<ClientAuth>] {
        self.router.client_auths()
    }

    fn client_auth(&self, sni: Option<&str>) -> Option<&Arc<ClientAuth>> {
        self.router.site(sni?)?.policy.client_auth.as_ref()
    }
}

impl crate::tls::ocsp::stapler::Stapling for Snapshot {
    fn certs(&self) -> &CertStore {
        &self.certs
    }

    fn roots(&self) -> &ApprovedRoots {
        &self.roots
    }

    fn ocsp(&self) -> &crate::tls::ocsp::OcspSettings {
        &self.ocsp
    }
}

impl Snapshot {
    /// The listeners it asks for.
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// The CA files and directories outside the certificate directories whose change matters:
    /// the approved roots and the sites' client certificate CAs.
    pub fn ca_paths(&self) -> Vec<PathBuf> {
        let clients = self.router.client_auths().iter().flat_map(|a| a.cas.iter());
        self.approved_paths.iter().chain(clients).cloned().collect()
    }

    /// The files error pages were read from, process-wide and every site's (a change to one is
    /// a reason to reload: the pages are compiled into the snapshot).
    pub fn error_page_files(&self) -> Vec<PathBuf> {
        let sites = self.router.sites().iter().map(|s| &s.policy.error_pages);
        let all = std::iter::once(&self.error_pages).chain(sites);
        all.flat_map(|p| p.files()).map(PathBuf::from).collect()
    }

    /// The policy of the site at `index` in the router.
    pub fn site_policy(&self, index: usize) -> Option<&SitePolicy> {
        self.router.site_at(index).map(|s| &s.policy)
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
        let days = i64::from(self.cert_policy.expiry_warning_days);
        let now = crate::tls::cert::unix_now();
        for cert in self.certs.certs() {
            let left = cert.info.days_left(now);
            if left < days {
                tracing::warn!(
                    notify = NotifyEvent::Expiring.mark(),
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
