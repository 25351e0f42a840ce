//! The schema of `[policy]` and `[access_log]` (see `file.rs` for the rest).

use std::time::Duration;

use serde::Deserialize;

use super::duration;

/// Default of `policy.max_uri_bytes`.
pub const DEFAULT_MAX_URI_BYTES: usize = 8 * 1024;
/// Default of `policy.max_header_bytes`.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
/// Default of `policy.max_body_bytes`.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
/// Default of `policy.body_read_timeout`.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of `policy.send_timeout`.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of `policy.header_read_timeout`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `policy.keepalive_timeout`.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of `access_log.chain_key_file`, beside the config file.
pub const DEFAULT_CHAIN_KEY_FILE: &str = "access-log.key";
/// Default of `access_log.max_file_bytes`.
pub const DEFAULT_ACCESS_LOG_MAX_BYTES: u64 = 1024 * 1024 * 1024;
/// Default of `access_log.buffer_lines`.
pub const DEFAULT_ACCESS_LOG_BUFFER: usize = 32 * 1024;

/// `[policy]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySection {
    /// Every site must declare a valid ICP filing number.
    pub require_icp: bool,
    /// Peers (CIDRs) whose X-Forwarded-For and X-Request-Id are believed.
    pub trusted_proxies: Vec<String>,
    /// Client CIDRs allowed on every site (all when empty).
    pub allow: Vec<String>,
    /// Client CIDRs denied on every site.
    pub deny: Vec<String>,
    /// Per-client-IP rate limit across all sites.
    pub rate_limit: Option<RateLimitSection>,
    /// Concurrent connections one client IP may hold (0: unlimited).
    pub max_connections_per_ip: u32,
    /// Longest request URI, bytes (414 beyond).
    pub max_uri_bytes: usize,
    /// Largest request header block, bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Largest request body, bytes (413 beyond), unless a site sets its own.
    pub max_body_bytes: u64,
    /// Methods accepted at all (405 otherwise).
    pub allowed_methods: Vec<String>,
    /// Timeout of each read of a request body.
    #[serde(deserialize_with = "duration::required")]
    pub body_read_timeout: Duration,
    /// Timeout of each write to a client: one that stops reading its response is cut (nginx's
    /// `send_timeout`).
    #[serde(deserialize_with = "duration::required")]
    pub send_timeout: Duration,
    /// Time a request header has to arrive in full: from the connection's start for its first
    /// request, from the first byte for later ones (the idle wait is `keepalive_timeout`).
    #[serde(deserialize_with = "duration::required")]
    pub header_read_timeout: Duration,
    /// How long an idle keep-alive connection waits for its next request (`0s`: no limit).
    #[serde(deserialize_with = "duration::required")]
    pub keepalive_timeout: Duration,
    /// Port in `https_only` redirects (default: the first TLS listener's; 443 is left out).
    pub https_redirect_port: Option<u16>,
    /// Host + path-prefix takedown rules, answered with 451.
    pub takedowns: Vec<TakedownSection>,
    /// Files of takedown entries (one per line: host, host/prefix or URL, then the case).
    pub takedown_files: Vec<String>,
}

impl Default for PolicySection {
    fn default() -> Self {
        Self {
            require_icp: true,
            trusted_proxies: Vec::new(),
            allow: Vec::new(),
            deny: Vec::new(),
            rate_limit: None,
            max_connections_per_ip: 0,
            max_uri_bytes: DEFAULT_MAX_URI_BYTES,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            allowed_methods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
                .map(String::from)
                .to_vec(),
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            https_redirect_port: None,
            takedowns: Vec::new(),
            takedown_files: Vec::new(),
        }
    }
}

/// `rate_limit = { requests_per_second = 10, burst = 20 }`
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    /// Sustained requests per second per client IP.
    pub requests_per_second: f64,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
}

/// `[[policy.takedowns]]`
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TakedownSection {
    /// Rule id, logged as `deny:takedown:<id>` and counted.
    pub id: String,
    /// Host the rule applies to (exact).
    pub host: String,
    /// Path prefix it blocks.
    pub prefix: String,
    /// Response body.
    #[serde(default = "default_takedown_body")]
    pub body: String,
}

fn default_takedown_body() -> String {
    "451 Unavailable For Legal Reasons\n".into()
}

/// `[access_log]`
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccessLogSection {
    /// File written (rotated files get a date suffix beside it).
    pub path: String,
    /// How long rotated files are kept: calendar months (`"6mo"`, the default and least) or days
    /// (`"184d"` at least: six calendar months can be 184 days).
    pub retention: Option<String>,
    /// Chain every line and seal rotated files (tamper evidence). Default true.
    #[serde(default = "default_true")]
    pub tamper_evident: bool,
    /// The key of the chain: 32 bytes as hex (`menshen logs key FILE` makes one).
    #[serde(default = "default_chain_key_file")]
    pub chain_key_file: String,
    /// The admin audit log (default: `admin-audit.log` beside `path`).
    pub audit_file: Option<String>,
    /// Ship sealed files to S3-compatible object storage. Default: not shipped.
    pub shipping: Option<super::file_ship::ShippingSection>,
    /// Rotate when the file reaches this size.
    #[serde(default = "default_access_log_max_bytes")]
    pub max_file_bytes: u64,
    /// Lines buffered between requests and the writer thread.
    #[serde(default = "default_access_log_buffer")]
    pub buffer_lines: usize,
}

fn default_true() -> bool {
    true
}
fn default_chain_key_file() -> String {
    DEFAULT_CHAIN_KEY_FILE.into()
}
fn default_access_log_max_bytes() -> u64 {
    DEFAULT_ACCESS_LOG_MAX_BYTES
}
fn default_access_log_buffer() -> usize {
    DEFAULT_ACCESS_LOG_BUFFER
}
