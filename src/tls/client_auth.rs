//! Client certificates (mutual TLS) per site: the CAs a client's certificate must chain to, and
//! whether one is required or only asked for.
//!
//! A site's [`ClientAuth`] is compiled with the config. `listener` picks the rustls configuration
//! by the ClientHello's SNI, so only the handshakes for that site ask for a certificate, and
//! `resolver` records what the handshake settled ([`ClientCertCheck`]) for the proxy: the policy
//! rule `client_cert` refuses a request for the site on a connection not made for it, and the
//! backend is told the verified certificate in `X-Forwarded-Client-Cert` (Envoy's format).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use http::HeaderValue;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use super::{pem_files_in, read_pem_certs};

/// Whether a client must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertMode {
    /// Asked for; a client without one is served (and its backend is told nothing), a client
    /// with one that does not verify is refused.
    Optional,
    /// A client without a certificate that verifies is refused in the handshake.
    Required,
}

impl ClientCertMode {
    /// As written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientCertMode::Optional => "optional",
            ClientCertMode::Required => "required",
        }
    }
}

/// One site's client certificate check.
pub struct ClientAuth {
    /// Optional or required.
    pub mode: ClientCertMode,
    /// The CA files and directories named in the config.
    pub cas: Vec<PathBuf>,
    /// The subjects of the CAs loaded from them.
    pub ca_subjects: Vec<String>,
    /// SHA-256 over every CA's DER: two checks with the same mode and fingerprint are the same.
    fingerprint: [u8; 32],
    verifier: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("mode", &self.mode)
            .field("cas", &self.cas)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ClientAuth {
    fn eq(&self, other: &Self) -> bool {
        self.mode == other.mode && self.fingerprint == other.fingerprint
    }
}

impl ClientAuth {
    /// Loads the CAs in `cas` (PEM files, or directories of `*.pem` / `*.crt`); the error says
    /// which file is wrong and why.
    pub fn load(mode: ClientCertMode, cas: Vec<PathBuf>) -> Result<Self, String> {
        if cas.is_empty() {
            return Err(
                "lists no CA; name the PEM files of the CAs that issue client \
                        certificates"
                    .into(),
            );
        }
        let mut roots = RootCertStore::empty();
        let mut ca_subjects = Vec::new();
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        for path in &cas {
            let files = match path.is_dir() {
                true => pem_files_in(path).map_err(|e| e.to_string())?,
                false => vec![path.clone()],
            };
            for file in files {
                let certs = read_pem_certs(&file).map_err(|e| e.to_string())?;
                if certs.is_empty() {
                    return Err(format!("{}: no PEM certificate found", file.display()));
                }
                for der in certs {
                    let (_, parsed) = x509_parser::parse_x509_certificate(&der).map_err(|e| {
                        format!("{}: not an X.509 certificate: {e}", file.display())
                    })?;
                    roots
                        .add(der.clone())
                        .map_err(|e| format!("{}: not usable as a CA: {e}", file.display()))?;
                    ca_subjects.push(parsed.subject().to_string());
                    digest.update(der.as_ref());
                }
            }
        }
        if roots.is_empty() {
            return Err("the CA directories hold no .pem or .crt file".into());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        let builder = match mode {
            ClientCertMode::Optional => builder.allow_unauthenticated(),
            ClientCertMode::Required => builder,
        };
        let verifier = builder.build().map_err(|e| e.to_string())?;
        let mut fingerprint = [0; 32];
        fingerprint.copy_from_slice(digest.finish().as_ref());
        Ok(Self {
            mode,
            cas,
            ca_subjects,
            fingerprint,
            verifier,
        })
    }

    /// The rustls verifier for the handshakes of this site.
    pub fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.verifier.clone()
    }
}

/// What a handshake for a site with a client certificate check settled.
#[derive(Debug)]
pub struct ClientCertCheck {
    /// The check the handshake ran.
    pub auth: Arc<ClientAuth>,
    /// `X-Forwarded-Client-Cert` for the backend, when the client presented a certificate
    /// (rustls verified it, or the handshake would have failed).
    pub forwarded: Option<HeaderValue>,
}

/// The `X-Forwarded-Client-Cert` value of a verified client certificate (Envoy's format):
/// `Hash=` the SHA-256 of its DER in lowercase hex, `Subject="` its RFC 4514 subject `"`.
pub fn forwarded_client_cert(der: &[u8]) -> Option<HeaderValue> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let hash = ring::digest::digest(&ring::digest::SHA256, der);
    let mut value = String::from("Hash=");
    for b in hash.as_ref() {
        let _ = write!(value, "{b:02x}");
    }
    value.push_str(";Subject=\"");
    for c in cert.subject().to_string().chars() {
        match c {
            '"' | '\\' => {
                value.push('\\');
                value.push(c);
            }
            // A control character cannot go into a header: the subject is sent without it.
            c if c.is_control() => {}
            c => value.push(c),
        }
    }
    value.push('"');
    // A subject in UTF-8 goes as obs-text, as the certificate wrote it.
    HeaderValue::from_bytes(value.as_bytes()).ok()
}
