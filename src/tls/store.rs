//! The served certificates, indexed by name for SNI selection.
//!
//! Built from the certificate directories at every load. On a reload, a pair that fails its checks
//! keeps its last good version (if that still passes against the current approved roots); at start
//! there is no last good version, so it is left out. Whether that refuses the load is the
//! reload judge's call (`reload::judge`), the same at start and on reload.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use rustls::pki_types::CertificateDer;

use super::cert::{load_pair, recheck};
use super::layout::{self, PairFiles};
use super::{dirs_in, files_in, read_pem_certs, ApprovedRoots, ServedCert, TlsError};

/// Certificates by host name. Selection: exact name, then wildcard, then the default; where
/// several certificates cover a name, the one that stays valid longest.
#[derive(Debug, Default)]
pub struct CertStore {
    certs: Vec<Arc<ServedCert>>,
    /// By the `.crt` file each was loaded from.
    files: HashMap<PathBuf, Arc<ServedCert>>,
    exact: HashMap<Box<str>, Arc<ServedCert>>,
    /// Keyed by the part after `*.`: `*.example.cn` is stored as `example.cn`.
    wildcard: HashMap<Box<str>, Arc<ServedCert>>,
    default: Option<Arc<ServedCert>>,
}

/// Where certificate pairs come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertSources {
    /// Directories of `NAME.crt` + `NAME.key`.
    pub dirs: Vec<PathBuf>,
    /// Explicit (name, certificate file, key file) pairs.
    pub pairs: Vec<(String, PathBuf, PathBuf)>,
}

impl CertSources {
    /// Every file or directory whose change matters: the certificate directories and their
    /// subdirectories (one Secret mounted in each), and the explicit pair files.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for dir in &self.dirs {
            out.push(dir.clone());
            out.extend(dirs_in(dir).unwrap_or_default());
        }
        for (_, crt, key) in &self.pairs {
            out.push(crt.clone());
            out.push(key.clone());
        }
        out
    }

    /// The configured paths a load must be able to read: directories and pair files.
    pub fn configured(&self) -> Vec<&Path> {
        let pairs = self.pairs.iter().flat_map(|(_, c, k)| [c.as_path(), k]);
        self.dirs
            .iter()
            .map(PathBuf::as_path)
            .chain(pairs)
            .collect()
    }
}

/// A certificate file and what loading it gave.
type PairResult = (PathBuf, Result<Arc<ServedCert>, TlsError>);

/// Loads the pairs of `dir` and of each of its subdirectories (hidden ones, such as a Secret's
/// `..data`, skipped), in every layout `layout.rs` recognises. Fails only when `dir` itself
/// cannot be read.
fn dir_pairs(
    dir: &Path,
    roots: &ApprovedRoots,
    now: i64,
    previous: Option<&CertStore>,
) -> Result<Vec<PairResult>, TlsError> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(dirs_in(dir)?);
    for (i, d) in dirs.iter().enumerate() {
        let files = match files_in(d) {
            Ok(files) => files,
            Err(e) if i == 0 => return Err(e),
            Err(e) => {
                out.push((d.clone(), Err(e)));
                continue;
            }
        };
        let folder = d
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let scan = layout::scan(&files, &folder, i > 0);
        let mut hints: Vec<CertificateDer<'static>> = Vec::new();
        if let Some(hint) = &scan.hint {
            match read_pem_certs(hint) {
                Ok(certs) => hints = certs,
                Err(e) => out.push((hint.clone(), Err(e))),
            }
        }
        for problem in scan.problems {
            let file = problem.file().map(Path::to_path_buf).unwrap_or_default();
            out.push((file, Err(problem)));
        }
        for pair in &scan.pairs {
            let last = previous.and_then(|p| p.by_file(&pair.crt));
            out.push((pair.crt.clone(), load_pair(pair, &hints, roots, now, last)));
        }
    }
    Ok(out)
}

/// The result of reading the certificate directories.
#[derive(Debug, Default)]
pub struct CertLoad {
    /// What will serve.
    pub store: CertStore,
    /// Every pair that failed, and every unreadable directory.
    pub errors: Vec<TlsError>,
    /// Pairs that failed but whose last good version still serves.
    pub kept_previous: Vec<PathBuf>,
}

impl CertStore {
    /// Reads every pair of `sources` and verifies it against `roots`.
    /// A pair that fails falls back to its version in `previous`, re-checked against `roots`.
    pub fn load(
        sources: &CertSources,
        default_name: Option<&str>,
        roots: &ApprovedRoots,
        previous: Option<&CertStore>,
        now: i64,
    ) -> CertLoad {
        let mut load = CertLoad::default();
        let mut certs = Vec::new();
        let mut take = |crt: &PathBuf, result: Result<Arc<ServedCert>, TlsError>| match result {
            Ok(cert) => certs.push(cert),
            Err(e) => {
                load.errors.push(e);
                let last_good = previous
                    .and_then(|p| p.by_file(crt))
                    .filter(|old| recheck(old, roots, now).is_ok());
                if let Some(old) = last_good {
                    load.kept_previous.push(crt.clone());
                    certs.push(old.clone());
                }
            }
        };
        for dir in &sources.dirs {
            match dir_pairs(dir, roots, now, previous) {
                Ok(results) => {
                    for (crt, result) in results {
                        take(&crt, result);
                    }
                }
                Err(e) => take(dir, Err(e)),
            }
        }
        for (name, crt, key) in &sources.pairs {
            let last = previous.and_then(|p| p.by_file(crt));
            let files = PairFiles {
                name: name.clone(),
                crt: crt.clone(),
                key: key.clone(),
                note: None,
            };
            take(crt, load_pair(&files, &[], roots, now, last));
        }
        load.store = CertStore::index(certs);
        if let Some(name) = default_name {
            load.store.default = load.store.by_name(name).cloned();
            if load.store.default.is_none() {
                load.errors.push(TlsError::UnknownDefault(name.to_owned()));
            }
        }
        load
    }

    fn index(certs: Vec<Arc<ServedCert>>) -> CertStore {
        let mut store = CertStore::default();
        for cert in &certs {
            store.files.insert(cert.info.file.clone(), cert.clone());
            for host in &cert.info.hosts {
                let (map, key) = match host.strip_prefix("*.") {
                    Some(base) => (&mut store.wildcard, base),
                    None => (&mut store.exact, host.as_str()),
                };
                let longer = |old: &Arc<ServedCert>| cert.info.not_after > old.info.not_after;
                match map.get(key) {
                    Some(old) if !longer(old) => {}
                    _ => {
                        map.insert(key.into(), cert.clone());
                    }
                }
            }
        }
        store.certs = certs;
        store
    }

    /// The certificate for a ClientHello's SNI (`None`: no SNI sent).
    pub fn select(&self, sni: Option<&str>) -> Option<&Arc<ServedCert>> {
        let Some(name) = sni else {
            return self.default.as_ref();
        };
        self.covering(name).or(self.default.as_ref())
    }

    /// The certificate whose SANs cover `name` (lowercase), ignoring the default.
    pub fn covering(&self, name: &str) -> Option<&Arc<ServedCert>> {
        if let Some(cert) = self.exact.get(name) {
            return Some(cert);
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent)
    }

    /// The rustls key for an SNI, as the resolver needs it.
    pub fn resolve(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let now = super::cert::unix_now();
        self.select(sni).map(|c| c.served_key(now))
    }

    /// Whether a handshake with this SNI would get a certificate.
    pub fn accepts(&self, sni: Option<&str>) -> bool {
        self.select(sni).is_some()
    }

    /// Every served certificate, in file order.
    pub fn certs(&self) -> &[Arc<ServedCert>] {
        &self.certs
    }

    /// The served certificate loaded from `file`.
    pub fn by_file(&self, file: &Path) -> Option<&Arc<ServedCert>> {
        self.files.get(file)
    }

    /// The served certificate of pair `name`.
    pub fn by_name(&self, name: &str) -> Option<&Arc<ServedCert>> {
        self.certs.iter().find(|c| c.info.name == name)
    }

    /// The pair served when SNI is absent or unknown.
    pub fn default_cert(&self) -> Option<&Arc<ServedCert>> {
        self.default.as_ref()
    }
}
