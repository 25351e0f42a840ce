//! One certificate pair (`NAME.crt` + `NAME.key`), verified against the approved roots.
//!
//! A [`ServedCert`] only exists for a chain that passed every check in [`verify`]; the store and
//! the resolver can therefore never hold anything else.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::sign::CertifiedKey;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

pub use super::format_time;

use super::chain::{arrange, Facts};
use super::layout::PairFiles;
use super::reject::diagnose;
use super::staple::Ocsp;
use super::{parse_pem_certs, ApprovedRoots, RejectReason, TlsError};

/// What operators see about a served certificate (`menshen certs`, logs, status page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Pair name: the file stem.
    pub name: String,
    /// The `.crt` file.
    pub file: PathBuf,
    /// SAN DNS names (lowercase, wildcards included) and IP addresses.
    pub hosts: Vec<String>,
    /// Leaf subject.
    pub subject: String,
    /// Leaf issuer.
    pub issuer: String,
    /// CN (or subject) of the approved root the chain ends in.
    pub root: String,
    /// Serial number, hex.
    pub serial: String,
    /// Not-before, seconds since the epoch.
    pub not_before: i64,
    /// Not-after, seconds since the epoch.
    pub not_after: i64,
    /// What loading corrected or recognised (chain order, a root left out, a layout), one line
    /// each; warned about in the log and shown by `menshen certs`, `check` and `/status`.
    pub corrections: Vec<String>,
}

impl ServedCert {
    /// The key to serve at `now`: with its OCSP response stapled while that is good and
    /// current, else without.
    pub fn served_key(&self, now: i64) -> Arc<CertifiedKey> {
        let ocsp = self.ocsp.load();
        match ocsp.as_deref().and_then(|o| o.current(now)) {
            Some(stapled) => stapled.clone(),
            None => self.key.clone(),
        }
    }

    /// Whether this certificate's SANs cover `host` (lowercase, no port): exact, one-label
    /// wildcard, or IP address.
    pub fn covers(&self, host: &str) -> bool {
        let parent = host.split_once('.').map(|(_, p)| p);
        self.info.hosts.iter().any(|h| match h.strip_prefix("*.") {
            Some(base) => parent == Some(base),
            None => h == host,
        })
    }
}

impl CertInfo {
    /// Whole days until not-after (negative once expired).
    pub fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(86_400)
    }
}

/// A verified chain with its key, ready for rustls.
#[derive(Debug)]
pub struct ServedCert {
    /// Operator-facing facts.
    pub info: CertInfo,
    /// Chain and signing key as rustls serves them.
    pub key: Arc<CertifiedKey>,
    /// SHA-256 of the `.crt` and `.key` file contents (and the chain hints), to notice changes.
    pub content_hash: [u8; 32],
    /// The approved roots it was verified against ([`ApprovedRoots::fingerprint`]).
    pub roots: [u8; 32],
    /// Its OCSP response and state, kept by the stapler (`ocsp::stapler`); kept with the
    /// certificate across reloads that leave its files alone.
    pub ocsp: ArcSwapOption<Ocsp>,
}

/// Seconds since the epoch, now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Reads and verifies `crt` + `key`. `now` is seconds since the epoch. `hints` are intermediates
/// to append when the `.crt` file lacks them (a Kubernetes Secret's `ca.crt`); only those on
/// the verified path are served.
///
/// `previous` is what the same file served until now: when the files hold the same bytes, the
/// approved roots are the same and it is still within its validity, it is served again as it
/// is, without parsing and verifying it again (a reload at 10,000 sites costs the files that
/// changed, not the fleet).
pub fn load_pair(
    files: &PairFiles,
    hints: &[CertificateDer<'static>],
    roots: &ApprovedRoots,
    now: i64,
    previous: Option<&Arc<ServedCert>>,
) -> Result<Arc<ServedCert>, TlsError> {
    // The two files are read one after the other: a pair swapped between the two reads (a
    // symlink or `..data` swap) looks like a key mismatch. Then the files changed since: read
    // the pair again rather than refuse it.
    let mut tries = 0;
    loop {
        let result = load_pair_once(files, hints, roots, now, previous);
        let mismatch = matches!(&result, Err(TlsError::Rejected { reason, .. })
            if matches!(**reason, RejectReason::KeyMismatch { .. }));
        tries += 1;
        if !mismatch || tries == 3 {
            return result;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn load_pair_once(
    files: &PairFiles,
    hints: &[CertificateDer<'static>],
    roots: &ApprovedRoots,
    now: i64,
    previous: Option<&Arc<ServedCert>>,
) -> Result<Arc<ServedCert>, TlsError> {
    let (crt, key) = (files.crt.as_path(), files.key.as_path());
    let read = |file: &Path| {
        std::fs::read(file).map_err(|e| TlsError::Io {
            file: file.to_path_buf(),
            reason: e.to_string(),
        })
    };
    let crt_bytes = read(crt)?;
    let key_bytes = read(key)?;
    let content_hash = hash_pair(&crt_bytes, &key_bytes, hints);
    let unchanged = previous.filter(|old| {
        old.content_hash == content_hash
            && old.roots == roots.fingerprint()
            && (old.info.not_before..old.info.not_after).contains(&now)
    });
    if let Some(old) = unchanged {
        return Ok(old.clone());
    }
    let chain = parse_pem_certs(crt, &crt_bytes)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificateIn(crt.to_path_buf()));
    }
    let key_der = rustls_pemfile::private_key(&mut key_bytes.as_slice())
        .map_err(|e| bad_key(key, format!("not a PEM private key: {e}")))?
        .ok_or_else(|| {
            bad_key(
                key,
                "no private key found (expected PKCS#8, SEC1 or PKCS#1 PEM)".into(),
            )
        })?;
    let arranged = arrange(chain, Some(&key_der));
    let mut served = verify(crt, key, arranged.chain, hints, key_der, roots, now)?;
    served.info.name = files.name.clone();
    served.info.corrections = files.note.iter().cloned().collect();
    served.info.corrections.extend(arranged.corrections);
    for correction in &served.info.corrections {
        tracing::warn!(file = %crt.display(), "certificate loaded with a correction: {correction}");
    }
    Ok(Arc::new(ServedCert {
        content_hash,
        ..served
    }))
}

/// SHA-256 over a certificate file, its key file and the chain hints beside them.
pub fn hash_pair(crt: &[u8], key: &[u8], hints: &[CertificateDer<'static>]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(crt);
    ctx.update(key);
    for hint in hints {
        ctx.update(hint.as_ref());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn bad_key(key: &Path, reason: String) -> TlsError {
    TlsError::BadKey {
        file: key.to_path_buf(),
        reason,
    }
}

/// Every check a served chain must pass: a path to an approved root for serverAuth, valid now,
/// leaf not a CA and not self-signed, well-formed SANs, and a key that matches the leaf.
/// Hints the path needed are appended to the served chain.
pub fn verify(
    crt: &Path,
    key_file: &Path,
    mut chain: Vec<CertificateDer<'static>>,
    hints: &[CertificateDer<'static>],
    key: PrivateKeyDer<'static>,
    roots: &ApprovedRoots,
    now: i64,
) -> Result<ServedCert, TlsError> {
    let (info, used) = check_chain(crt, &chain, hints, roots, now)?;
    chain.extend(used);
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::Rejected {
            file: crt.to_path_buf(),
            subject: info.subject.clone(),
            issuer: info.issuer.clone(),
            reason: Box::new(RejectReason::KeyMismatch {
                key: key_file.display().to_string(),
            }),
        },
        other => bad_key(key_file, format!("unusable private key: {other}")),
    })?;
    Ok(ServedCert {
        info,
        key: Arc::new(certified),
        content_hash: [0; 32],
        roots: roots.fingerprint(),
        ocsp: ArcSwapOption::empty(),
    })
}

/// Checks a served chain again (after the approved roots changed, or time passed).
pub fn recheck(cert: &ServedCert, roots: &ApprovedRoots, now: i64) -> Result<CertInfo, TlsError> {
    check_chain(&cert.info.file, &cert.key.cert, &[], roots, now).map(|(info, _)| info)
}

/// The chain checks of [`verify`], without the key; returns what operators see and the hints
/// the verified path went through (to append to the served chain).
fn check_chain(
    crt: &Path,
    chain: &[CertificateDer<'static>],
    hints: &[CertificateDer<'static>],
    roots: &ApprovedRoots,
    now: i64,
) -> Result<(CertInfo, Vec<CertificateDer<'static>>), TlsError> {
    let Some(leaf_der) = chain.first() else {
        return Err(TlsError::NoCertificateIn(crt.to_path_buf()));
    };
    let (_, leaf) =
        x509_parser::parse_x509_certificate(leaf_der).map_err(|e| TlsError::BadKey {
            file: crt.to_path_buf(),
            reason: format!("first certificate is not valid X.509: {e}"),
        })?;
    let reject = |reason: RejectReason| TlsError::Rejected {
        file: crt.to_path_buf(),
        subject: leaf.subject().to_string(),
        issuer: leaf.issuer().to_string(),
        reason: Box::new(reason),
    };
    let (not_before, not_after) = check_leaf(&leaf, now).map_err(reject)?;
    let hosts = san_hosts(&leaf).map_err(reject)?;
    let (root, used) = approved_path(chain, hints, roots, now).map_err(reject)?;
    let info = CertInfo {
        name: pair_name(crt),
        file: crt.to_path_buf(),
        hosts,
        subject: leaf.subject().to_string(),
        issuer: leaf.issuer().to_string(),
        root,
        serial: leaf.raw_serial_as_string().replace(':', ""),
        not_before,
        not_after,
        corrections: Vec::new(),
    };
    Ok((info, used))
}

/// The leaf's validity `(not before, not after)`; refused when it is self-signed, a CA,
/// expired or not yet valid.
fn check_leaf(leaf: &X509Certificate<'_>, now: i64) -> Result<(i64, i64), RejectReason> {
    if leaf.subject().as_raw() == leaf.issuer().as_raw() {
        return Err(RejectReason::SelfSigned);
    }
    if leaf.is_ca() {
        return Err(RejectReason::LeafIsCa);
    }
    let not_before = leaf.validity().not_before.timestamp();
    let not_after = leaf.validity().not_after.timestamp();
    if now > not_after {
        return Err(RejectReason::Expired(format_time(not_after)));
    }
    if now < not_before {
        return Err(RejectReason::NotYetValid(format_time(not_before)));
    }
    Ok((not_before, not_after))
}

/// The path from the chain's leaf (its first certificate) to an approved root, through the chain's
/// intermediates and `hints`: the root's name and the hints the path went through.
fn approved_path(
    chain: &[CertificateDer<'static>],
    hints: &[CertificateDer<'static>],
    roots: &ApprovedRoots,
    now: i64,
) -> Result<(String, Vec<CertificateDer<'static>>), RejectReason> {
    let Some((leaf, given)) = chain.split_first() else {
        return Err(RejectReason::Refused("no certificate".into()));
    };
    let ee = webpki::EndEntityCert::try_from(leaf)
        .map_err(|_| RejectReason::Malformed("the server certificate cannot be parsed".into()))?;
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.max(0) as u64));
    let mut intermediates = given.to_vec();
    intermediates.extend(hints.iter().filter(|h| !chain.contains(h)).cloned());
    let path = ee
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            roots.anchors(),
            &intermediates,
            time,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| {
            let mut offered = Facts::all(std::slice::from_ref(leaf));
            offered.extend(Facts::all(&intermediates));
            diagnose(e, &offered, roots, now)
        })?;
    let root = roots
        .root_for(path.anchor())
        .map(|r| r.name.clone())
        .unwrap_or_default();
    let used = path
        .intermediate_certificates()
        .map(|c| c.der().into_owned())
        .filter(|der| !chain.contains(der))
        .collect();
    Ok((root, used))
}

/// The pair name of a certificate file: its stem.
pub fn pair_name(crt: &Path) -> String {
    crt.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The SAN DNS names (lowercased, checked) and IP addresses of the leaf.
fn san_hosts(leaf: &X509Certificate<'_>) -> Result<Vec<String>, RejectReason> {
    let san = leaf
        .subject_alternative_name()
        .map_err(|e| RejectReason::Malformed(format!("unreadable subjectAltName: {e}")))?;
    let Some(san) = san else {
        return Err(RejectReason::NoSan);
    };
    let mut hosts = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(dns) => {
                let lower = dns.to_ascii_lowercase();
                if !valid_san_dns(&lower) {
                    return Err(RejectReason::BadSan(dns.to_string()));
                }
                hosts.push(lower);
            }
            GeneralName::IPAddress(bytes) => {
                if let Some(ip) = ip_from_bytes(bytes) {
                    hosts.push(ip.to_string());
                }
            }
            _ => {}
        }
    }
    if hosts.is_empty() {
        return Err(RejectReason::NoSan);
    }
    Ok(hosts)
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

/// A DNS name, or `*.` followed by one with at least two labels (no `*.cn`).
pub fn valid_san_dns(name: &str) -> bool {
    let base = match name.strip_prefix("*.") {
        Some(rest) if rest.contains('.') => rest,
        Some(_) => return false,
        None => name,
    };
    !base.contains('*') && rustls::pki_types::DnsName::try_from(base).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_sans_must_cover_one_label_under_two() {
        assert!(valid_san_dns("shop.example.cn"));
        assert!(valid_san_dns("*.example.cn"));
        assert!(!valid_san_dns("*.cn"));
        assert!(!valid_san_dns("a.*.example.cn"));
        assert!(!valid_san_dns("sh*p.example.cn"));
        assert!(!valid_san_dns("bad name.cn"));
    }

    #[test]
    fn days_left_rounds_down_and_goes_negative() {
        let info = CertInfo {
            name: "x".into(),
            file: PathBuf::from("x.crt"),
            hosts: vec![],
            subject: String::new(),
            issuer: String::new(),
            root: String::new(),
            serial: String::new(),
            not_before: 0,
            not_after: 10 * 86_400,
            corrections: Vec::new(),
        };
        assert_eq!(info.days_left(0), 10);
        assert_eq!(info.days_left(86_400 + 1), 8);
        assert_eq!(info.days_left(11 * 86_400), -1);
    }
}
