//! The schema of a site's TLS settings beyond `[tls]`: client certificates (see `file.rs` for
//! the rest).

use std::time::Duration;

use serde::Deserialize;

use super::duration;

/// `tls.ocsp.timeout` when not set.
pub const DEFAULT_OCSP_TIMEOUT: Duration = Duration::from_secs(10);
/// `tls.ocsp.retry` when not set.
pub const DEFAULT_OCSP_RETRY: Duration = Duration::from_secs(300);

/// `[tls.ocsp]`: OCSP stapling.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct OcspSection {
    /// Ask the responder named in a certificate when there is no `NAME.ocsp` beside it.
    pub fetch: bool,
    /// An HTTP proxy (`http://host:port`) for the responders.
    pub proxy: Option<String>,
    /// How long a responder may take.
    #[serde(deserialize_with = "duration::required")]
    pub timeout: Duration,
    /// Wait after a failed fetch before the next try.
    #[serde(deserialize_with = "duration::required")]
    pub retry: Duration,
}

impl Default for OcspSection {
    fn default() -> Self {
        Self {
            fetch: true,
            proxy: None,
            timeout: DEFAULT_OCSP_TIMEOUT,
            retry: DEFAULT_OCSP_RETRY,
        }
    }
}

/// `[sites.client_certificates]`: mutual TLS for one site.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificatesSection {
    /// `"required"` (no verified certificate, no handshake) or `"optional"` (asked for; a
    /// client without one is served).
    pub mode: String,
    /// PEM files, or directories of `*.pem` / `*.crt`, of the CAs that issue client
    /// certificates.
    pub cas: Vec<String>,
}
