//! The stapler: a thread that keeps every served certificate's OCSP response current.
//!
//! Each pass reads `NAME.ocsp` beside each certificate (used when present), or asks the
//! certificate's responder when its response is half way to nextUpdate (after a failure, after
//! `retry`), verifies what it got, and leaves the result in the certificate's slot. A response
//! that fails keeps the last good one stapled while it is current; a revoked certificate is
//! never stapled and is logged as an error. A pass runs when the serving snapshot changes (a
//! reload: new certificates, a new `.ocsp` file), when a refresh is due, and at least every
//! [`CHECK_EVERY`] (a `.ocsp` file replaced without a reload).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use der::{Decode, Encode};
use rustls::sign::CertifiedKey;
use x509_cert::Certificate;

use super::fetch::{post, request, responder_url};
use super::verify::{verify, CertState, OcspError, Verified};
use super::{Ocsp, OcspSettings, Source};
use crate::tls::cert::unix_now;
use crate::tls::store::CertStore;
use crate::tls::{ApprovedRoots, ServedCert};

/// What the stapler reads from the serving state (the snapshot, which sits above this module
/// and implements it).
pub trait Stapling: Send + Sync + 'static {
    /// The certificates served now.
    fn certs(&self) -> &CertStore;
    /// The approved roots (issuers of leaves served without intermediates).
    fn roots(&self) -> &ApprovedRoots;
    /// How responses are fetched.
    fn ocsp(&self) -> &OcspSettings;
}

/// Longest pause between passes.
pub const CHECK_EVERY: Duration = Duration::from_secs(60);
/// How often the thread looks whether the snapshot changed.
const TICK: Duration = Duration::from_millis(500);

/// Starts the stapler thread over `state`.
pub fn start<S: Stapling>(state: Arc<ArcSwap<S>>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("menshen-ocsp".into())
        .spawn(move || {
            let mut last: Option<Arc<S>> = None;
            let mut due = 0;
            loop {
                let now = unix_now();
                let current = state.load_full();
                let changed = last.as_ref().is_none_or(|l| !Arc::ptr_eq(l, &current));
                if changed || now >= due {
                    due = pass(
                        current.certs().certs(),
                        current.roots(),
                        current.ocsp(),
                        now,
                    );
                    last = Some(current);
                }
                std::thread::sleep(TICK);
            }
        })
        .map(|_| ())
}

/// Checks every certificate; returns when the next pass is due.
fn pass(certs: &[Arc<ServedCert>], roots: &ApprovedRoots, s: &OcspSettings, now: i64) -> i64 {
    let mut due = now + CHECK_EVERY.as_secs() as i64;
    for cert in certs {
        let Some((leaf, issuer)) = leaf_and_issuer(cert, roots) else {
            continue;
        };
        let next = check(cert, &leaf, &issuer, s, now);
        due = due.min(next.refresh_at.max(now + 1));
        let before = cert.ocsp.load();
        let same = before.as_ref().is_some_and(|b| {
            b.verified == next.verified
                && b.error == next.error
                && b.file_digest == next.file_digest
        });
        if !same {
            report(cert, &next);
        }
        cert.ocsp.store(Some(Arc::new(next)));
    }
    due
}

/// The leaf and the certificate that issued it (the next in the chain, or the approved root).
fn leaf_and_issuer(cert: &ServedCert, roots: &ApprovedRoots) -> Option<(Certificate, Certificate)> {
    let chain = &cert.key.cert;
    let leaf = Certificate::from_der(chain.first()?).ok()?;
    if let Some(next) = chain.get(1) {
        return Some((leaf, Certificate::from_der(next).ok()?));
    }
    let issuer_name = leaf.tbs_certificate.issuer.to_der().ok()?;
    let root = roots.roots().iter().find_map(|r| {
        let root = Certificate::from_der(&r.der).ok()?;
        (root.tbs_certificate.subject.to_der().ok()? == issuer_name).then_some(root)
    })?;
    Some((leaf, root))
}

/// The certificate's next OCSP state.
fn check(
    cert: &ServedCert,
    leaf: &Certificate,
    issuer: &Certificate,
    s: &OcspSettings,
    now: i64,
) -> Ocsp {
    let before = cert.ocsp.load_full();
    let file = cert.info.file.with_extension("ocsp");
    match std::fs::read(&file) {
        Ok(bytes) => return from_file(cert, leaf, issuer, &bytes, before.as_deref(), now),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            let error = Some(format!("{}: {e}", file.display()));
            return kept(before.as_deref(), error, now + s.retry.as_secs() as i64);
        }
        Err(_) => {}
    }
    let url = responder_url(leaf).filter(|_| s.fetch);
    let Some(url) = url else {
        return Ocsp {
            stapled: None,
            verified: None,
            source: None,
            error: None,
            refresh_at: now + CHECK_EVERY.as_secs() as i64,
            file_digest: None,
        };
    };
    if let Some(b) = before
        .as_deref()
        .filter(|b| b.file_digest.is_none() && now < b.refresh_at)
    {
        return b.clone();
    }
    let retry_at = now + s.retry.as_secs() as i64;
    let fetched = request(leaf, issuer)
        .and_then(|req| post(&url, &req, s.proxy.as_deref(), s.timeout))
        .and_then(|der| judged(cert, leaf, issuer, der, now).map_err(|e| e.to_string()));
    match fetched {
        Ok((verified, stapled)) => Ocsp {
            stapled,
            refresh_at: refresh_at(&verified, now),
            verified: Some(verified),
            source: Some(Source::Responder(url)),
            error: None,
            file_digest: None,
        },
        Err(e) => kept(before.as_deref(), Some(e), retry_at),
    }
}

/// The state from `NAME.ocsp`'s contents (re-verified only when they changed or expire).
fn from_file(
    cert: &ServedCert,
    leaf: &Certificate,
    issuer: &Certificate,
    bytes: &[u8],
    before: Option<&Ocsp>,
    now: i64,
) -> Ocsp {
    let digest = sha256(bytes);
    if let Some(b) = before.filter(|b| b.file_digest == Some(digest) && now < b.refresh_at) {
        return b.clone();
    }
    let der = bytes.to_vec();
    match judged(cert, leaf, issuer, der, now) {
        Ok((verified, stapled)) => Ocsp {
            stapled,
            refresh_at: verified.next_update,
            verified: Some(verified),
            source: Some(Source::File),
            error: None,
            file_digest: Some(digest),
        },
        Err(e) => Ocsp {
            file_digest: Some(digest),
            source: Some(Source::File),
            ..kept(
                before,
                Some(format!("NAME.ocsp: {e}")),
                now + CHECK_EVERY.as_secs() as i64,
            )
        },
    }
}

/// Verifies `der` for the certificate: the verdict, and the key to staple when it is good.
fn judged(
    cert: &ServedCert,
    leaf: &Certificate,
    issuer: &Certificate,
    der: Vec<u8>,
    now: i64,
) -> Result<(Verified, Option<Arc<CertifiedKey>>), OcspError> {
    let (leaf, issuer) = (leaf.to_der(), issuer.to_der());
    let (Ok(leaf), Ok(issuer)) = (leaf, issuer) else {
        return Err(OcspError::Malformed(
            "the certificate does not re-encode".into(),
        ));
    };
    let verified = verify(&der, &leaf, &issuer, now)?;
    let stapled = (verified.state == CertState::Good).then(|| {
        let mut key = (*cert.key).clone();
        key.ocsp = Some(der);
        Arc::new(key)
    });
    Ok((verified, stapled))
}

/// Fetch again half way between thisUpdate and nextUpdate.
fn refresh_at(v: &Verified, now: i64) -> i64 {
    (v.this_update + (v.next_update - v.this_update) / 2).max(now + 1)
}

/// The previous state with `error` noted: its response stays stapled while it is current.
fn kept(before: Option<&Ocsp>, error: Option<String>, refresh_at: i64) -> Ocsp {
    match before {
        Some(b) => Ocsp {
            error,
            refresh_at,
            ..b.clone()
        },
        None => Ocsp {
            stapled: None,
            verified: None,
            source: None,
            error,
            refresh_at,
            file_digest: None,
        },
    }
}

/// Logs a change: a revoked certificate loudly.
fn report(cert: &ServedCert, ocsp: &Ocsp) {
    let now = unix_now();
    let file = cert.info.file.display().to_string();
    let summary = ocsp.summary(now);
    match ocsp.verified.as_ref().map(|v| v.state) {
        Some(CertState::Revoked(_)) => tracing::error!(
            notify = "revoked",
            file,
            hosts = ?cert.info.hosts,
            "certificate REVOKED according to its OCSP responder: not stapled; replace it \
             now ({summary})"
        ),
        _ if ocsp.error.is_some() => tracing::warn!(file, "OCSP: {summary}"),
        _ => tracing::info!(file, "OCSP: {summary}"),
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}
