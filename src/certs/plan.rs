//! `certs install` up to the decision: the leaf and its key, the chain in order and completed
//! from `tls.intermediates`, checked against the approved roots by the very code that serves
//! (`tls::chain::arrange`, `tls::cert::verify`), and what it replaces, with the names it would
//! no longer serve.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::decode::Delivery;
use super::pending::Pending;
use super::place::Place;
use super::{name_for, IntakeError};
use crate::tls::cert::{format_time, unix_now, verify};
use crate::tls::chain::{arrange, Facts};
use crate::tls::{read_pem_certs, ApprovedRoots, ServedCert};

/// Where the key comes from.
#[derive(Debug)]
pub enum KeySource {
    /// A pending request's key.
    Pending(Pending),
    /// `--key FILE`.
    Given(PathBuf),
    /// A key in the delivery (a `.pfx`, a zip, a PEM bundle).
    Delivered(String),
}

/// Everything `install` will do, decided before anything is written.
#[derive(Debug)]
pub struct Plan {
    /// Pair name.
    pub name: String,
    /// The verified pair (chain completed), as the proxy will serve it.
    pub served: ServedCert,
    /// Its key.
    pub key: PrivateKeyDer<'static>,
    /// Where the key came from.
    pub key_source: KeySource,
    /// The served pair it replaces.
    pub replaces: Option<Arc<ServedCert>>,
    /// Names the replaced pair serves that the new one does not cover.
    pub lost: Vec<String>,
    /// What was corrected in the delivered chain.
    pub corrections: Vec<String>,
    /// Intermediates taken from `tls.intermediates`.
    pub completed: usize,
    /// The certificates folder it goes to.
    pub dir: PathBuf,
}

/// A key that may sign the delivered leaf, with where it came from.
type Candidate = (KeySource, PrivateKeyDer<'static>);

/// Decides the install of `delivery`. `key` is `--key`, `name` is `--name`.
pub fn plan(
    place: &Place,
    mut delivery: Delivery,
    key: Option<(PathBuf, PrivateKeyDer<'static>)>,
    name: Option<&str>,
    pending: Vec<Pending>,
) -> Result<Plan, IntakeError> {
    let given = key.is_some();
    let pending_names: Vec<String> = pending.iter().map(|p| p.name.clone()).collect();
    let mut keys = candidate_keys(key, delivery.keys.drain(..), pending);
    let facts = Facts::all(&delivery.certs);
    let (leaf, key_at) = the_leaf(&facts, &keys, given, &pending_names, place)?;
    let (key_source, key) = keys.swap_remove(key_at);
    let chain: Vec<CertificateDer<'static>> = facts
        .iter()
        .filter(|f| f.is_ca || f.der == leaf.der)
        .map(|f| f.der.clone())
        .collect();
    let arranged = arrange(chain, Some(&key));
    let given_len = arranged.chain.len();
    let roots = approved_roots(place)?;
    let hints = intermediates(place)?;
    let (current, dir) = current(place)?;
    let mut served = verify_delivered(leaf, arranged.chain, &key, &hints, &roots)?;
    let replaces = replaced(&current, &served, name)?;
    let name = match (name, &replaces, &key_source) {
        (Some(n), _, _) => n.to_owned(),
        (None, Some(old), _) => old.info.name.clone(),
        (None, None, KeySource::Pending(p)) => p.name.clone(),
        (None, None, _) => name_for(served.info.hosts.first().map_or("certificate", |h| h)),
    };
    served.info.name = name.clone();
    let lost = replaces
        .as_ref()
        .map(|old| lost_names(old, &served))
        .unwrap_or_default();
    let dir = match &replaces {
        Some(old) => folder_of(place, &old.info.file)?,
        None => dir,
    };
    Ok(Plan {
        name,
        completed: served.key.cert.len() - given_len,
        served,
        key,
        key_source,
        replaces,
        lost,
        corrections: arranged.corrections,
        dir,
    })
}

/// Every key the leaf may belong to: `--key`, the delivery's, then the pending requests'.
fn candidate_keys(
    given: Option<(PathBuf, PrivateKeyDer<'static>)>,
    delivered: impl Iterator<Item = (String, PrivateKeyDer<'static>)>,
    pending: Vec<Pending>,
) -> Vec<Candidate> {
    let given = given.map(|(file, k)| (KeySource::Given(file), k));
    let delivered = delivered.map(|(source, k)| (KeySource::Delivered(source), k));
    let pending = pending.into_iter().map(|p| {
        let k = p.key.clone_key();
        (KeySource::Pending(p), k)
    });
    given.into_iter().chain(delivered).chain(pending).collect()
}

/// The one server certificate of the delivery whose key is here, and that key's index in `keys`.
fn the_leaf<'f>(
    facts: &'f [Facts],
    keys: &[Candidate],
    given: bool,
    pending: &[String],
    place: &Place,
) -> Result<(&'f Facts, usize), IntakeError> {
    let servers: Vec<&Facts> = facts.iter().filter(|f| !f.is_ca).collect();
    let matched: Vec<(&Facts, usize)> = servers
        .iter()
        .filter_map(|leaf| Some((*leaf, keys.iter().position(|(_, k)| leaf.matches_key(k))?)))
        .collect();
    match matched.as_slice() {
        [one] => Ok(*one),
        [] => Err(no_key(&servers, facts, given, pending, place)),
        several => {
            let names: Vec<&str> = several.iter().map(|(f, _)| f.short.as_str()).collect();
            Err(IntakeError::Refused(format!(
                "several server certificates in the delivery have their key here ({}): \
                 install them one at a time",
                names.join(", ")
            )))
        }
    }
}

/// The approved roots the config names.
fn approved_roots(place: &Place) -> Result<ApprovedRoots, IntakeError> {
    ApprovedRoots::load(&place.approved).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        IntakeError::Config {
            config: place.config.clone(),
            reason: format!("the approved roots do not load: {}", lines.join("; ")),
        }
    })
}

/// The arranged chain verified against the approved roots and completed from `hints`
/// (`tls.intermediates`), by the code that serves it.
fn verify_delivered(
    leaf: &Facts,
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'static>,
    hints: &[CertificateDer<'static>],
    roots: &ApprovedRoots,
) -> Result<ServedCert, IntakeError> {
    let probe = Facts::of(&leaf.der).map(|f| f.short).unwrap_or_default();
    verify(
        Path::new(&format!("the delivered certificate for {probe}")),
        Path::new("its key"),
        chain,
        hints,
        key.clone_key(),
        roots,
        unix_now(),
    )
    .map_err(|e| IntakeError::Refused(format!("refused: {e}")))
}

/// The names `old` serves that `new` does not cover.
fn lost_names(old: &ServedCert, new: &ServedCert) -> Vec<String> {
    old.info
        .hosts
        .iter()
        .filter(|h| !new.covers(h))
        .cloned()
        .collect()
}

/// Why no leaf could be installed: no server certificate, or none whose key is here.
fn no_key(
    servers: &[&Facts],
    facts: &[Facts],
    given: bool,
    pending: &[String],
    place: &Place,
) -> IntakeError {
    if servers.is_empty() {
        let names: Vec<&str> = facts.iter().map(|f| f.short.as_str()).collect();
        return IntakeError::Refused(format!(
            "the delivery holds no server certificate, only CA certificates ({}): ask the CA for \
             the certificate issued for your CSR",
            names.join(", ")
        ));
    }
    let leaves: Vec<&str> = servers.iter().map(|f| f.short.as_str()).collect();
    let pending = if pending.is_empty() {
        format!("none is pending in {}", place.pending.display())
    } else {
        format!(
            "pending: {} in {}",
            pending.join(", "),
            place.pending.display()
        )
    };
    IntakeError::Refused(format!(
        "the certificate for {} matches no key here ({}{}): give the key its CSR was made with \
         (--key FILE), or make a new request (menshen certs request) and have the CA reissue \
         the certificate for it",
        leaves.join(", "),
        if given { "not --key; " } else { "" },
        pending
    ))
}

/// The certificates of `tls.intermediates`, the folder that completes chains.
fn intermediates(place: &Place) -> Result<Vec<CertificateDer<'static>>, IntakeError> {
    let Some(dir) = &place.intermediates else {
        return Ok(Vec::new());
    };
    let files = crate::tls::pem_files_in(dir).map_err(|e| IntakeError::Config {
        config: place.config.clone(),
        reason: format!("tls.intermediates: {e}"),
    })?;
    let mut out = Vec::new();
    for file in files {
        out.extend(read_pem_certs(&file).map_err(|e| IntakeError::Config {
            config: place.config.clone(),
            reason: format!("tls.intermediates: {e}"),
        })?);
    }
    Ok(out)
}

/// What serves now, as `menshen certs` sees it, and the folder new pairs go to.
fn current(place: &Place) -> Result<(Vec<Arc<ServedCert>>, PathBuf), IntakeError> {
    let (load, _) = crate::config::compile::load_certs(&place.config).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        IntakeError::Config {
            config: place.config.clone(),
            reason: format!("the config does not load:\n  {}", lines.join("\n  ")),
        }
    })?;
    Ok((load.store.certs().to_vec(), place.certificates.clone()))
}

/// The served pair the new one replaces: the one named `name`, or the one serving its names.
fn replaced(
    current: &[Arc<ServedCert>],
    new: &ServedCert,
    name: Option<&str>,
) -> Result<Option<Arc<ServedCert>>, IntakeError> {
    if let Some(name) = name {
        return Ok(current.iter().find(|c| c.info.name == name).cloned());
    }
    let overlapping: Vec<&Arc<ServedCert>> = current
        .iter()
        .filter(|c| c.info.hosts.iter().any(|h| new.covers(h)))
        .collect();
    match overlapping.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).clone())),
        several => {
            let names: Vec<String> = several
                .iter()
                .map(|c| format!("{} ({})", c.info.name, c.info.file.display()))
                .collect();
            Err(IntakeError::Refused(format!(
                "several served certificates serve names of this one: {}; choose the one it \
                 replaces with --name",
                names.join(", ")
            )))
        }
    }
}

/// The certificates folder holding `file`; a file outside them is a `[[tls.pairs]]` pair.
fn folder_of(place: &Place, file: &Path) -> Result<PathBuf, IntakeError> {
    place
        .dirs
        .iter()
        .find(|d| file.starts_with(d))
        .cloned()
        .ok_or_else(|| {
            IntakeError::Refused(format!(
                "{} is a [[tls.pairs]] pair; install writes into tls.certificates: remove its \
                 [[tls.pairs]] entry first, or install under another --name",
                file.display()
            ))
        })
}

impl Plan {
    /// The summary printed before anything is written (and alone with `--dry-run`).
    pub fn summary(&self) -> String {
        let i = &self.served.info;
        let now = unix_now();
        let key = match &self.key_source {
            KeySource::Pending(p) => {
                format!("pending request {:?} ({})", p.name, p.key_file.display())
            }
            KeySource::Given(f) => format!("--key {}", f.display()),
            KeySource::Delivered(s) => format!("in the delivery ({s})"),
        };
        let mut out = format!(
            "certificate for: {}\nissuer:          {}\napproved root:   {}\nvalid:           {} \
             to {} ({} days left)\nserial:          {}\nkey:             {key}\nchain:           \
             the leaf and {} intermediate(s){}\n",
            i.hosts.join(", "),
            i.issuer,
            i.root,
            format_time(i.not_before),
            format_time(i.not_after),
            i.days_left(now),
            i.serial,
            self.served.key.cert.len() - 1,
            if self.completed > 0 {
                format!(", {} taken from tls.intermediates", self.completed)
            } else {
                String::new()
            }
        );
        for c in &self.corrections {
            out.push_str(&format!("corrected:       {c}\n"));
        }
        match &self.replaces {
            Some(old) => out.push_str(&format!(
                "replaces:        {} ({}, serial {}, hosts {}, not after {})\n",
                old.info.name,
                old.info.file.display(),
                old.info.serial,
                old.info.hosts.join(", "),
                format_time(old.info.not_after)
            )),
            None => out.push_str("replaces:        nothing (a new pair)\n"),
        }
        out.push_str(&format!(
            "writes:          {}\n",
            self.dir
                .join(&self.name)
                .join(format!("{}.crt", self.name))
                .display()
        ));
        out
    }
}
