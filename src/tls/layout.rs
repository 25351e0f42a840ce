//! Which files of a certificates directory make a pair. `NAME.crt` + `NAME.key`, and the
//! layouts operators bring from elsewhere: certbot's `fullchain.pem` + `privkey.pem` (the pair
//! named after its folder), `NAME.pem` + `NAME.key`, a reseller's nginx folder
//! `NAME_bundle.crt` + `NAME.key`, a Kubernetes Secret's `tls.crt` + `tls.key` (`ca.crt` a chain
//! hint). What could pair two ways, or not at all, is refused naming the files: menshen never
//! guesses which key belongs to which certificate. `store.rs` loads what this finds.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::chain::{key_spki, Facts};
use super::TlsError;

/// A chain hint beside `tls.crt` + `tls.key` in a Kubernetes TLS Secret or cert-manager volume:
/// intermediates to append, never served on its own (unless a `ca.key` makes it a pair).
pub const CHAIN_HINT: &str = "ca.crt";

/// The files of one pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairFiles {
    /// Pair name (for `default_certificate` and reports).
    pub name: String,
    /// The certificate chain file.
    pub crt: PathBuf,
    /// The private key file.
    pub key: PathBuf,
    /// Which layout other than `NAME.crt` + `NAME.key` it was recognised in, for the reports.
    pub note: Option<String>,
}

/// What one directory holds.
#[derive(Debug, Default)]
pub struct Scan {
    /// The pairs found.
    pub pairs: Vec<PairFiles>,
    /// Files that pair two ways or not at all.
    pub problems: Vec<TlsError>,
    /// The chain hint, if there is one.
    pub hint: Option<PathBuf>,
}

fn name_of(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

fn stem(p: &Path) -> &str {
    p.file_stem().and_then(|n| n.to_str()).unwrap_or("")
}

/// The certificate files that pair with `key` by name, whether they exist or not.
fn partners(key: &Path) -> Vec<PathBuf> {
    let dir = key.parent().unwrap_or(Path::new(""));
    if name_of(key) == "privkey.pem" {
        return vec![dir.join("fullchain.pem")];
    }
    let n = stem(key);
    vec![
        dir.join(format!("{n}.crt")),
        dir.join(format!("{n}.pem")),
        dir.join(format!("{n}_bundle.crt")),
    ]
}

fn list(files: &[PathBuf]) -> String {
    let names: Vec<&str> = files.iter().map(|f| name_of(f)).collect();
    names.join(" and ")
}

/// A key file and the certificate files beside it that pair with it by name.
type Claim = (PathBuf, Vec<PathBuf>);

/// The pairs among `files` (the regular files of one directory). `folder` names certbot's pair
/// and, in a subdirectory (`subdir`), a Kubernetes Secret's `tls` pair.
pub fn scan(files: &[PathBuf], folder: &str, subdir: bool) -> Scan {
    // Lookups by set and map, not by scanning: a folder may hold 10,000 pairs.
    let present: HashSet<&PathBuf> = files.iter().collect();
    let has = |p: &PathBuf| present.contains(p);
    let is_key =
        |p: &PathBuf| p.extension().is_some_and(|e| e == "key") || name_of(p) == "privkey.pem";
    let hint = files
        .iter()
        .find(|p| name_of(p) == CHAIN_HINT && !has(&p.with_extension("key")))
        .cloned();
    let keys: Vec<Claim> = files
        .iter()
        .filter(|p| is_key(p))
        .map(|k| (k.clone(), partners(k).into_iter().filter(has).collect()))
        .collect();
    let mut certs: Vec<PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "crt") && Some(*p) != hint.as_ref())
        .cloned()
        .collect();
    certs.extend(keys.iter().flat_map(|(_, found)| found.iter().cloned()));
    certs.sort();
    certs.dedup();
    let mut claimed: HashMap<&PathBuf, Vec<&Claim>> = HashMap::new();
    for key in &keys {
        for partner in &key.1 {
            claimed.entry(partner).or_default().push(key);
        }
    }
    let mut scan = Scan {
        hint,
        ..Scan::default()
    };
    for crt in certs {
        let claims = claimed.get(&crt).cloned().unwrap_or_default();
        match pair_of(crt, &claims, folder, subdir) {
            Ok(pair) => scan.pairs.push(pair),
            Err(problem) => scan.problems.push(problem),
        }
    }
    for (key, found) in &keys {
        if found.is_empty() {
            scan.problems.push(lone_key(key, files));
        }
    }
    scan
}

/// The pair certificate `crt` makes with the one key that `claims` it; refused when no key or
/// several do, or when the key pairs with other certificates as well.
fn pair_of(
    crt: PathBuf,
    claims: &[&Claim],
    folder: &str,
    subdir: bool,
) -> Result<PairFiles, TlsError> {
    match claims {
        [] => Err(TlsError::MissingKey {
            key: expected_key(&crt),
            crt,
        }),
        [(key, partners)] if partners.len() > 1 => Err(TlsError::Layout {
            file: crt,
            reason: format!(
                "{} pair with the same key {}; menshen does not guess which to serve: keep \
                 one of them (the full chain) and move the others out",
                list(partners),
                name_of(key)
            ),
        }),
        [(key, _)] => Ok(pair(crt, key.clone(), folder, subdir)),
        several => {
            let keys: Vec<PathBuf> = several.iter().map(|(k, _)| k.clone()).collect();
            Err(TlsError::Layout {
                file: crt,
                reason: format!(
                    "{} both pair with this certificate; menshen does not guess which is its \
                     key: move the other one out",
                    list(&keys)
                ),
            })
        }
    }
}

/// The refusal of `key`, which pairs with no certificate by name.
fn lone_key(key: &Path, files: &[PathBuf]) -> TlsError {
    let expected = partners(key);
    let owner = key_owner(key, files)
        .map(|crt| format!(" (it is the key of {})", name_of(&crt)))
        .unwrap_or_default();
    TlsError::Layout {
        file: key.to_path_buf(),
        reason: format!(
            "a private key with no certificate beside it (expected {}){owner}; menshen does \
             not guess which certificate it belongs to: name the certificate after it, or move \
             the key out of the certificates directory",
            expected
                .iter()
                .map(|p| name_of(p))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The certificate file among `files` whose leaf `key` belongs to, for the message about a key
/// that pairs with nothing by name.
fn key_owner(key: &Path, files: &[PathBuf]) -> Option<PathBuf> {
    let bytes = std::fs::read(key).ok()?;
    let key = rustls_pemfile::private_key(&mut bytes.as_slice()).ok()??;
    let spki = key_spki(&key)?;
    files
        .iter()
        .filter(|f| {
            f.extension()
                .is_some_and(|e| e == "crt" || e == "pem" || e == "cer")
        })
        .find(|f| {
            super::read_pem_certs(f)
                .map(|certs| Facts::all(&certs).iter().any(|c| c.spki == spki))
                .unwrap_or(false)
        })
        .cloned()
}

/// The key `crt` would pair with.
fn expected_key(crt: &Path) -> PathBuf {
    match stem(crt).strip_suffix("_bundle") {
        Some(n) => crt.with_file_name(format!("{n}.key")),
        None => crt.with_extension("key"),
    }
}

fn pair(crt: PathBuf, key: PathBuf, folder: &str, subdir: bool) -> PairFiles {
    let n = stem(&key).to_owned();
    let (name, note) = match (name_of(&crt), name_of(&key)) {
        ("fullchain.pem", "privkey.pem") => (
            folder.to_owned(),
            Some(format!(
                "fullchain.pem + privkey.pem (certbot layout) serve as the pair \"{folder}\""
            )),
        ),
        ("tls.crt", "tls.key") if subdir => (folder.to_owned(), None),
        (c, k) if c.ends_with("_bundle.crt") => (
            n.clone(),
            Some(format!(
                "{c} + {k} (a reseller's nginx layout) serve as the pair \"{n}\""
            )),
        ),
        (c, k) if c.ends_with(".pem") => (
            n.clone(),
            Some(format!("{c} + {k} serve as the pair \"{n}\"")),
        ),
        _ => (n, None),
    };
    PairFiles {
        name,
        crt,
        key,
        note,
    }
}

/// The names of the pairs in `dir` and its subdirectories, by file names alone.
pub fn pair_names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let folder = name_of(dir).to_owned();
    if let Ok(files) = super::files_in(dir) {
        out.extend(
            scan(&files, &folder, false)
                .pairs
                .into_iter()
                .map(|p| p.name),
        );
    }
    for sub in super::dirs_in(dir).unwrap_or_default() {
        if let Ok(files) = super::files_in(&sub) {
            let folder = name_of(&sub).to_owned();
            out.extend(
                scan(&files, &folder, true)
                    .pairs
                    .into_iter()
                    .map(|p| p.name),
            );
        }
    }
    out
}

#[cfg(test)]
#[path = "layout_tests.rs"]
mod tests;
