//! The approved roots: the only trust anchors a served chain may end in.
//!
//! Loaded from the PEM files and directories in `tls.approved_cas`. `cert.rs` verifies every served
//! chain against exactly this set and nothing else (no system or Mozilla roots).

use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, TrustAnchor};

use super::{pem_files_in, read_pem_certs, TlsError};

/// One approved root, kept for reporting which root a chain ends in.
#[derive(Debug, Clone)]
pub struct ApprovedRoot {
    /// Subject of the root, e.g. `CN=vTrus ECC Root CA, O=iTrusChina Co.,Ltd., C=CN`.
    pub subject: String,
    /// Short display name: the subject's CN, or the whole subject without one.
    pub name: String,
    /// File it was loaded from.
    pub file: PathBuf,
    /// DER of the root's subject name, to match a verified path's anchor.
    subject_der: Vec<u8>,
    /// The certificate (the issuer of a leaf served without intermediates, for OCSP).
    pub der: CertificateDer<'static>,
}

/// The set of approved roots, compiled once per load.
#[derive(Debug, Default)]
pub struct ApprovedRoots {
    anchors: Vec<TrustAnchor<'static>>,
    roots: Vec<ApprovedRoot>,
    /// SHA-256 chained over every root's DER, in load order.
    fingerprint: [u8; 32],
}

impl ApprovedRoots {
    /// Loads every certificate in `paths` (files, or directories of `*.pem`/`*.crt`).
    /// Returns every problem found, not just the first.
    pub fn load(paths: &[PathBuf]) -> Result<Self, Vec<TlsError>> {
        let mut set = ApprovedRoots::default();
        let mut errors = Vec::new();
        for path in paths {
            let files = if path.is_dir() {
                match pem_files_in(path) {
                    Ok(files) => files,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                }
            } else {
                vec![path.clone()]
            };
            if files.is_empty() {
                errors.push(TlsError::NoApprovedRootsIn(path.clone()));
            }
            for file in files {
                if let Err(e) = set.add_file(&file) {
                    errors.push(e);
                }
            }
        }
        if errors.is_empty() && set.anchors.is_empty() {
            errors.push(TlsError::NoApprovedRoots);
        }
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    fn add_file(&mut self, file: &Path) -> Result<(), TlsError> {
        let certs = read_pem_certs(file)?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificateIn(file.to_path_buf()));
        }
        for der in certs {
            self.add_der(file, &der)?;
        }
        Ok(())
    }

    /// Adds one root certificate given as DER.
    pub fn add_der(&mut self, file: &Path, der: &CertificateDer<'_>) -> Result<(), TlsError> {
        let bad = |reason: String| TlsError::BadApprovedRoot {
            file: file.to_path_buf(),
            reason,
        };
        let anchor = webpki::anchor_from_trusted_cert(der)
            .map_err(|e| bad(format!("not a usable root certificate: {e}")))?
            .to_owned();
        let (_, parsed) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| bad(format!("not an X.509 certificate: {e}")))?;
        let subject = parsed.subject().to_string();
        let name = super::common_name(parsed.subject()).unwrap_or_else(|| subject.clone());
        self.roots.push(ApprovedRoot {
            subject,
            name,
            file: file.to_path_buf(),
            subject_der: anchor.subject.as_ref().to_vec(),
            der: der.clone().into_owned(),
        });
        self.anchors.push(anchor);
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&self.fingerprint);
        ctx.update(der.as_ref());
        self.fingerprint.copy_from_slice(ctx.finish().as_ref());
        Ok(())
    }

    /// Identifies this set of roots: a certificate verified against the same fingerprint need not
    /// be verified again while it is valid.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The trust anchors, for rustls-webpki.
    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// Every approved root.
    pub fn roots(&self) -> &[ApprovedRoot] {
        &self.roots
    }

    /// The approved root whose subject is `anchor`'s.
    pub fn root_for(&self, anchor: &TrustAnchor<'_>) -> Option<&ApprovedRoot> {
        self.roots
            .iter()
            .find(|r| r.subject_der == anchor.subject.as_ref())
    }

    /// Whether some approved root has this subject (as displayed by x509-parser).
    pub fn has_subject(&self, subject: &str) -> bool {
        self.roots.iter().any(|r| r.subject == subject)
    }
}
