//! TLS termination under approved CAs only.
//!
//! `approved` loads the roots, `cert` verifies one certificate pair against them, `store` indexes
//! the verified certificates by name for SNI, `resolver` hands rustls the certificate for a
//! ClientHello, `sni_gate` refuses unknown names with an `unrecognized_name` alert, `provider`
//! compiles the protocol policy (versions, suites, resumption, key exchange), `client_auth` a
//! site's client certificate check, `ocsp` staples each certificate's OCSP response, and
//! `listener` runs handshakes.
//! `client` is the other side: TLS from the HTTP/1 engine to backends.

pub mod approved;
pub mod cert;
pub mod chain;
pub mod client;
pub mod client_auth;
pub mod layout;
pub mod listener;
pub mod ocsp;
pub mod provider;
pub mod reject;
pub mod resolver;
pub mod sni_gate;
pub mod staple;
pub mod store;

use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;
use thiserror::Error;
use x509_parser::x509::X509Name;

pub use approved::ApprovedRoots;
pub use cert::{CertInfo, ServedCert};
pub use reject::RejectReason;
pub use store::CertStore;

/// Everything that can go wrong loading approved roots and certificates.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum TlsError {
    /// A file or directory could not be read.
    #[error("{file}: cannot read: {reason}")]
    Io {
        /// Path.
        file: PathBuf,
        /// OS error.
        reason: String,
    },
    /// A file holds no PEM certificate.
    #[error("{0}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificateIn(PathBuf),
    /// An approved-CA directory is empty.
    #[error("{0}: tls.approved_cas directory holds no .pem or .crt file")]
    NoApprovedRootsIn(PathBuf),
    /// `tls.approved_cas` yields nothing.
    #[error("tls.approved_cas lists no root certificate; nothing could be served")]
    NoApprovedRoots,
    /// An approved root is unusable.
    #[error("{file}: approved CA rejected: {reason}")]
    BadApprovedRoot {
        /// Path.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// `NAME.crt` without `NAME.key`.
    #[error("{crt}: no private key beside it (expected {key})")]
    MissingKey {
        /// Certificate file.
        crt: PathBuf,
        /// Expected key file.
        key: PathBuf,
    },
    /// Files that pair two ways, or a key that pairs with nothing.
    #[error("{file}: {reason}")]
    Layout {
        /// The certificate or key file.
        file: PathBuf,
        /// Which files, and what to do.
        reason: String,
    },
    /// The key file holds no usable key.
    #[error("{file}: {reason}")]
    BadKey {
        /// Key file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// A certificate that must not be served.
    #[error("{file}: {reason} (subject \"{subject}\", issuer \"{issuer}\")")]
    Rejected {
        /// Certificate file.
        file: PathBuf,
        /// Leaf subject.
        subject: String,
        /// Leaf issuer.
        issuer: String,
        /// Why.
        reason: Box<RejectReason>,
    },
    /// `tls.default_certificate` names no loaded pair.
    #[error("tls.default_certificate = {0:?} names no certificate pair in tls.certificates")]
    UnknownDefault(String),
}

impl TlsError {
    /// The certificate file this error is about, if any.
    pub fn file(&self) -> Option<&Path> {
        match self {
            TlsError::Io { file, .. }
            | TlsError::BadApprovedRoot { file, .. }
            | TlsError::BadKey { file, .. }
            | TlsError::Layout { file, .. }
            | TlsError::Rejected { file, .. } => Some(file),
            TlsError::NoCertificateIn(file) | TlsError::NoApprovedRootsIn(file) => Some(file),
            TlsError::MissingKey { crt, .. } => Some(crt),
            TlsError::NoApprovedRoots | TlsError::UnknownDefault(_) => None,
        }
    }
}

fn io_error(file: &Path, e: std::io::Error) -> TlsError {
    TlsError::Io {
        file: file.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Reads every PEM certificate in `file`, in order.
pub fn read_pem_certs(file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(file).map_err(|e| io_error(file, e))?;
    parse_pem_certs(file, &bytes)
}

/// Parses every PEM certificate in `bytes` (the contents of `file`), in order.
pub fn parse_pem_certs(
    file: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    rustls_pemfile::certs(&mut &bytes[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io_error(file, e))
}

/// The `*.pem` and `*.crt` files directly in `dir`, sorted, hidden entries (`..data`) skipped.
pub fn pem_files_in(dir: &Path) -> Result<Vec<PathBuf>, TlsError> {
    let mut files = files_in(dir)?;
    files.retain(|p| matches!(extension(p), Some("pem" | "crt")));
    Ok(files)
}

/// The regular files (following symlinks) directly in `dir`, sorted, hidden entries skipped.
pub fn files_in(dir: &Path) -> Result<Vec<PathBuf>, TlsError> {
    entries_of(dir, |t| t.is_file(), Path::is_file)
}

/// The visible entries of `dir` of one kind, sorted: the kind is the directory entry's own
/// (no `stat` per entry, which 10,000 certificates would make 20,000 of); a symlink is followed.
fn entries_of(
    dir: &Path,
    kind: impl Fn(&std::fs::FileType) -> bool,
    followed: impl Fn(&Path) -> bool,
) -> Result<Vec<PathBuf>, TlsError> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let wanted = match entry.file_type() {
            Ok(t) if t.is_symlink() => followed(&path),
            Ok(t) => kind(&t),
            Err(_) => followed(&path),
        };
        if wanted {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// The directories (following symlinks) directly in `dir`, sorted, hidden entries skipped.
pub fn dirs_in(dir: &Path) -> Result<Vec<PathBuf>, TlsError> {
    entries_of(dir, |t| t.is_dir(), Path::is_dir)
}

fn extension(p: &Path) -> Option<&str> {
    p.extension().and_then(|e| e.to_str())
}

/// RFC 3339 date-time (UTC) of a Unix timestamp, for messages.
pub fn format_time(ts: i64) -> String {
    x509_parser::time::ASN1Time::from_timestamp(ts)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ts.to_string())
}

/// The first CN of a name, if it has one.
pub fn common_name(name: &X509Name<'_>) -> Option<String> {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}
