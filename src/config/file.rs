//! The configuration file's schema: serde structs that mirror the TOML exactly.
//!
//! Nothing here is used on the data path; `compile.rs` turns a [`FileConfig`] into the runtime
//! [`crate::snapshot::Snapshot`]. Every section denies unknown keys so a typo is an error, not a
//! silently ignored setting. Defaults are the `DEFAULT_*` constants below.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::duration;

/// Worker threads of the proxy service when `server.threads` is not set.
pub const DEFAULT_THREADS: usize = 1;
/// Time in-flight requests get to finish on shutdown or upgrade.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// Certificates expiring within this long are warned about (21 days).
pub const DEFAULT_EXPIRY_WARNING: Duration = Duration::from_secs(21 * 86_400);
/// How often the config file and certificate directories are hashed.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(1000);
/// How long file events are collected before one reload runs.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(200);
/// Lower bound on how long a resolved backend address is used before a refresh.
pub const DEFAULT_DNS_MIN_TTL: Duration = Duration::from_secs(5);
/// Upper bound on how long a resolved backend address is used before a refresh.
pub const DEFAULT_DNS_MAX_TTL: Duration = Duration::from_secs(300);
/// Timeout of one DNS query.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_millis(2000);
/// Status of a redirect route when `redirect.status` is not set.
pub const DEFAULT_REDIRECT_STATUS: u16 = 308;
/// Status of a respond route when `respond.status` is not set.
pub const DEFAULT_RESPOND_STATUS: u16 = 200;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Process-wide settings.
    #[serde(default)]
    pub server: ServerSection,
    /// Where the proxy listens.
    #[serde(default)]
    pub listeners: Vec<ListenerSection>,
    /// Certificates and approved roots.
    pub tls: Option<TlsSection>,
    /// Resolvers for backend hostnames.
    #[serde(default)]
    pub dns: DnsSection,
    /// How changes on disk are noticed.
    #[serde(default)]
    pub reload: ReloadSection,
    /// Named pools of backends.
    #[serde(default)]
    pub upstreams: Vec<UpstreamSection>,
    /// Virtual hosts and their routes.
    #[serde(default)]
    pub sites: Vec<SiteSection>,
    /// Data-path rules: compliance, access control, limits.
    #[serde(default)]
    pub policy: PolicySection,
    /// The per-request access log; off when absent.
    pub access_log: Option<AccessLogSection>,
    /// The admin listener; off when absent.
    pub admin: Option<AdminSection>,
    /// The process log.
    #[serde(default)]
    pub log: LogSection,
    /// Robot webhooks for certificate and reload trouble; none when absent.
    pub notify: Option<NotifySection>,
    /// OpenTelemetry trace export; off when absent.
    pub otel: Option<OtelSection>,
    /// Error pages for every site that has none of its own for a status (and for requests of
    /// no site).
    #[serde(default)]
    pub error_pages: Vec<ErrorPageSection>,
    /// The edge cache's store.
    #[serde(default)]
    pub cache: CacheProcessSection,
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// `ip:port` of the admin listener (keep it private: 127.0.0.1 or a pod IP).
    pub addr: String,
    /// File holding the bearer token for `POST /reload`; without it that endpoint is refused.
    pub reload_token_file: Option<String>,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `text` or `json`.
    pub format: String,
    /// `error`, `warn`, `info`, `debug` or `trace` (or a tracing filter); `RUST_LOG` overrides.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// Let idle worker threads steal tasks from busy ones (costs CPU per request).
    pub work_stealing: bool,
    /// Time in-flight requests get to finish on shutdown (pingora counts whole seconds: a
    /// fraction is rounded up).
    #[serde(deserialize_with = "duration::required")]
    pub grace_period: Duration,
    /// Pingora's upgrade socket, used for zero-downtime binary upgrades.
    pub upgrade_sock: Option<String>,
    /// Pid file (needed by upgrades).
    pub pid_file: Option<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            threads: DEFAULT_THREADS,
            work_stealing: false,
            grace_period: DEFAULT_GRACE_PERIOD,
            upgrade_sock: None,
            pid_file: None,
        }
    }
}

/// `[[listeners]]`
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    /// Name used in logs.
    pub name: String,
    /// `ip:port` to bind.
    pub addr: String,
    /// Terminate TLS on this listener.
    #[serde(default)]
    pub tls: bool,
    /// Expect a PROXY protocol v1/v2 header (from a cloud L4 load balancer) before TLS.
    #[serde(default)]
    pub proxy_protocol: bool,
}

/// `[tls]`: the certificates served and how clients may talk TLS to them.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM files or directories of root certificates a served chain must end in.
    pub approved_cas: Vec<String>,
    /// Directories of `NAME.crt` + `NAME.key` pairs.
    #[serde(default)]
    pub certificates: Vec<String>,
    /// Pairs named explicitly, for files that do not follow the NAME.crt/NAME.key layout.
    #[serde(default)]
    pub pairs: Vec<PairSection>,
    /// Certificates expiring within this long are warned about.
    #[serde(
        default = "default_expiry_warning",
        deserialize_with = "duration::required"
    )]
    pub expiry_warning: Duration,
    /// NAME of the pair served when SNI is missing or matches no certificate.
    pub default_certificate: Option<String>,
    /// Refuse to start when any certificate file is rejected (instead of leaving it out).
    #[serde(default)]
    pub strict: bool,
    /// A folder of intermediate certificates (PEM) that `menshen certs install` appends to a
    /// delivered chain that lacks them (HAProxy's `issuers-chain-path`).
    pub intermediates: Option<String>,
    /// Lowest TLS version clients may use: "1.2" or "1.3".
    #[serde(default = "default_min_version")]
    pub min_version: String,
    /// Allowed cipher suites by rustls name, in preference order; empty means all AEAD suites.
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// Choose the first of our suites the client offers rather than the client's favourite
    /// (nginx's `ssl_prefer_server_ciphers`; on by default, as Envoy and Traefik do).
    #[serde(default = "default_true")]
    pub prefer_server_cipher_order: bool,
    /// Let clients resume TLS sessions (a cache of recent sessions and TLS 1.3 tickets).
    #[serde(default = "default_true")]
    pub session_resumption: bool,
    /// Offer the hybrid post-quantum key exchange X25519MLKEM768 first.
    #[serde(default = "default_true")]
    pub post_quantum: bool,
    /// OCSP stapling.
    #[serde(default)]
    pub ocsp: OcspSection,
}

impl TlsSection {
    /// `expiry_warning` in whole days, as certificate lifetimes are counted.
    pub fn expiry_warning_days(&self) -> u32 {
        duration::whole_days(self.expiry_warning)
    }
}

/// `[[tls.pairs]]`
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PairSection {
    /// Name (for `default_certificate` and reports).
    pub name: String,
    /// PEM chain: leaf first, then intermediates.
    pub cert: String,
    /// PEM private key.
    pub key: String,
}

fn default_expiry_warning() -> Duration {
    DEFAULT_EXPIRY_WARNING
}

/// `tls.min_version` when not set.
pub const DEFAULT_MIN_TLS_VERSION: &str = "1.2";

fn default_min_version() -> String {
    DEFAULT_MIN_TLS_VERSION.into()
}

/// `[dns]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsSection {
    /// `ip:port` of DNS servers; empty means the system's (`/etc/resolv.conf`).
    pub resolvers: Vec<String>,
    /// Shortest time an answer is used, whatever its TTL.
    #[serde(deserialize_with = "duration::required")]
    pub min_ttl: Duration,
    /// Longest time an answer is used, whatever its TTL.
    #[serde(deserialize_with = "duration::required")]
    pub max_ttl: Duration,
    /// Timeout of one query.
    #[serde(deserialize_with = "duration::required")]
    pub timeout: Duration,
}

impl Default for DnsSection {
    fn default() -> Self {
        Self {
            resolvers: Vec::new(),
            min_ttl: DEFAULT_DNS_MIN_TTL,
            max_ttl: DEFAULT_DNS_MAX_TTL,
            timeout: DEFAULT_DNS_TIMEOUT,
        }
    }
}

/// `[reload]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadSection {
    /// Watch the config file and certificate directories for changes.
    pub watch: bool,
    /// How often content hashes are compared (catches what watchers miss).
    #[serde(deserialize_with = "duration::required")]
    pub poll_interval: Duration,
    /// How long file events are collected before one reload runs.
    #[serde(deserialize_with = "duration::required")]
    pub debounce: Duration,
}

impl Default for ReloadSection {
    fn default() -> Self {
        Self {
            watch: true,
            poll_interval: DEFAULT_POLL_INTERVAL,
            debounce: DEFAULT_DEBOUNCE,
        }
    }
}

fn default_true() -> bool {
    true
}

/// `[[sites]]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SiteSection {
    /// Name used in logs and errors.
    pub name: String,
    /// Exact hosts and wildcards (`*.example.cn` matches any subdomain).
    pub hosts: Vec<String>,
    /// Routes; the longest matching prefix wins.
    #[serde(default)]
    pub routes: Vec<RouteSection>,
    /// ICP filing or licence number, e.g. `京ICP备16063439号-1`.
    pub icp: Option<String>,
    /// Public security filing number, e.g. `京公网安备11010802044671号`.
    pub public_security_filing: Option<String>,
    /// Answer plain HTTP with a 308 redirect to https.
    #[serde(default)]
    pub https_only: bool,
    /// `Strict-Transport-Security` max-age on TLS responses (whole seconds are sent); none
    /// when absent.
    #[serde(default, deserialize_with = "duration::optional")]
    pub hsts_max_age: Option<Duration>,
    /// Add `includeSubDomains` to HSTS.
    #[serde(default)]
    pub hsts_include_subdomains: bool,
    /// Client CIDRs allowed (all when empty).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Client CIDRs denied.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Per-client-IP rate limit for this site.
    pub rate_limit: Option<RateLimitSection>,
    /// Largest request body, bytes (default: `policy.max_body_bytes`).
    pub max_body_bytes: Option<u64>,
    /// Log the query string (off for sites whose queries carry personal data).
    #[serde(default = "default_true")]
    pub log_query: bool,
    /// Response headers removed (e.g. `Server`, `X-Powered-By`).
    #[serde(default)]
    pub remove_response_headers: Vec<String>,
    /// Response headers added.
    #[serde(default)]
    pub add_response_headers: BTreeMap<String, String>,
    /// `Server` on proxied responses, in place of the backend's (`menshen` when absent; `""`
    /// sends none).
    pub server_header: Option<String>,
    /// `Alt-Svc` on proxied responses; a backend's is never passed on (none when absent).
    pub alt_svc: Option<String>,
    /// Client certificates (mutual TLS); none asked for when absent.
    pub client_certificates: Option<ClientCertificatesSection>,
    /// Compression of responses the backend did not compress (none when absent).
    pub compression: Option<CompressionSection>,
    /// The edge cache for the site's upstream routes (off when absent).
    pub cache: Option<CacheSection>,
    /// Request headers set, added and removed on the way to the backend.
    #[serde(default)]
    pub request_headers: RequestHeadersSection,
    /// Pages in place of menshen's plain text for its own error answers.
    #[serde(default)]
    pub error_pages: Vec<ErrorPageSection>,
}

/// `request_headers = { ... }` of a site or a route (a route's after its site's).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RequestHeadersSection {
    /// Sent in place of the client's (`{client_ip}`, `{request_id}`, `{site}`, `{host}` in
    /// values).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Sent besides the client's (values as in `set`).
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Not forwarded.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `[[sites.routes]]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// Path prefix this route matches.
    pub prefix: String,
    /// Methods this route matches (all when absent).
    pub methods: Option<Vec<String>>,
    /// Proxy to this upstream.
    pub upstream: Option<String>,
    /// Answer directly.
    pub respond: Option<RespondSection>,
    /// Answer with a redirect.
    pub redirect: Option<RedirectSection>,
    /// Remove the matched prefix before proxying (the rest keeps a leading `/`).
    #[serde(default)]
    pub strip_prefix: bool,
    /// Replace the matched prefix with this before proxying.
    pub replace_prefix: Option<String>,
    /// Host header sent upstream instead of the client's.
    pub host_header: Option<String>,
    /// Per-client-IP rate limit for this route.
    pub rate_limit: Option<RateLimitSection>,
    /// Request headers set, added and removed, after the site's.
    #[serde(default)]
    pub request_headers: RequestHeadersSection,
    /// Response headers removed, besides the site's.
    #[serde(default)]
    pub remove_response_headers: Vec<String>,
    /// Response headers set, after the site's.
    #[serde(default)]
    pub add_response_headers: BTreeMap<String, String>,
    /// Connect timeout (default: the upstream's `connect_timeout`).
    #[serde(default, deserialize_with = "duration::optional")]
    pub connect_timeout: Option<Duration>,
    /// From the request sent to the response head (default: the upstream's `read_timeout`).
    #[serde(default, deserialize_with = "duration::optional")]
    pub first_byte_timeout: Option<Duration>,
    /// Longest wait between body reads, either way (default: the upstream's `read_timeout`).
    #[serde(default, deserialize_with = "duration::optional")]
    pub idle_timeout: Option<Duration>,
    /// The whole exchange (default: none).
    #[serde(default, deserialize_with = "duration::optional")]
    pub total_timeout: Option<Duration>,
    /// When a failed attempt is made again (default: `RetriesSection::default()`).
    pub retries: Option<RetriesSection>,
    /// The edge cache for this route, over its site's (`[sites.cache]`).
    pub cache: Option<CacheSection>,
}

/// `respond = { ... }`
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RespondSection {
    /// Response status.
    #[serde(default = "default_respond_status")]
    pub status: u16,
    /// Response body.
    #[serde(default)]
    pub body: String,
    /// Extra response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_respond_status() -> u16 {
    DEFAULT_RESPOND_STATUS
}

/// `redirect = { ... }`
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RedirectSection {
    /// Location to redirect to.
    pub to: String,
    /// 301, 302, 303, 307 or 308.
    #[serde(default = "default_redirect_status")]
    pub status: u16,
    /// Append the request path and query to `to`.
    #[serde(default)]
    pub keep_path: bool,
}

fn default_redirect_status() -> u16 {
    DEFAULT_REDIRECT_STATUS
}

pub use super::file_cache::*;
pub use super::file_compression::*;
pub use super::file_error_pages::*;
pub use super::file_notify::*;
pub use super::file_otel::*;
pub use super::file_policy::*;
pub use super::file_retries::*;
pub use super::file_ship::*;
pub use super::file_tls::*;
pub use super::file_upstreams::*;
