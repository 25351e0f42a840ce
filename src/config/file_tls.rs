//! The schema of a site's TLS settings beyond `[tls]`: client certificates (see `file.rs` for
//! the rest).

use serde::Deserialize;

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
