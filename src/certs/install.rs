//! `menshen certs install`: decode what the CA delivered, plan, print the summary, refuse a
//! name loss unless allowed, then write the pair (`write.rs`) and retire the pending request.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::decode::{decode, Delivery, Password};
use super::place::Place;
use super::plan::{plan, KeySource, Plan};
use super::{pending, reseller, write, IntakeError};
use crate::tls::chain::key_spki;

/// `certs install`'s flags.
#[derive(Debug)]
pub struct Options {
    /// What the CA delivered.
    pub files: Vec<PathBuf>,
    /// `--key`.
    pub key: Option<PathBuf>,
    /// `--name`.
    pub name: Option<String>,
    /// `--allow-name-loss`.
    pub allow_name_loss: bool,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--password-file`.
    pub password_file: Option<PathBuf>,
}

/// The PKCS#12 password: `--password-file`, `MENSHEN_PFX_PASSWORD`, or a prompt on a TTY.
fn password(file: Option<&Path>, source: &str) -> Result<String, IntakeError> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file).map_err(|e| IntakeError::io(file, "read", e))?;
        return Ok(text.trim_end_matches(['\r', '\n']).to_owned());
    }
    if let Ok(p) = std::env::var("MENSHEN_PFX_PASSWORD") {
        return Ok(p);
    }
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("password of {source}: "))
            .map_err(|e| IntakeError::Refused(format!("cannot read the password: {e}")));
    }
    Err(IntakeError::Usage {
        flag: "--password-file",
        reason: format!(
            "{source} is PKCS#12 and needs its password: give it with --password-file FILE or \
             MENSHEN_PFX_PASSWORD"
        ),
    })
}

/// Reads a delivered file (a zip: the entries the server needs) into `out`.
fn decode_file(file: &Path, password: Password<'_>, out: &mut Delivery) -> Result<(), IntakeError> {
    let bytes = std::fs::read(file).map_err(|e| IntakeError::io(file, "read", e))?;
    let source = file.display().to_string();
    if !reseller::is_zip(&bytes) {
        return decode(&source, &bytes, password, out);
    }
    let picked = reseller::unzip(&source, &bytes)?;
    out.passwords.extend(picked.passwords);
    for (name, content) in &picked.entries {
        decode(&format!("{source}:{name}"), content, password, out)?;
    }
    Ok(())
}

fn read_key(file: &Path) -> Result<PrivateKeyDer<'static>, IntakeError> {
    let bytes = std::fs::read(file).map_err(|e| IntakeError::io(file, "read", e))?;
    if let Ok(Some(key)) = rustls_pemfile::private_key(&mut bytes.as_slice()) {
        return Ok(key);
    }
    PrivateKeyDer::try_from(bytes).map_err(|_| IntakeError::File {
        file: file.to_path_buf(),
        reason: "--key: not a private key (expected PEM or DER: PKCS#8, SEC1 or PKCS#1)".into(),
    })
}

fn pem_of(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der.to_vec()))
}

/// Runs the install; prints the summary and what was done.
pub fn run(config: &Path, opts: Options) -> Result<(), IntakeError> {
    check_flags(&opts)?;
    let place = Place::of(config)?;
    let delivery = read_delivery(&opts)?;
    let key = match &opts.key {
        Some(file) => Some((file.clone(), read_key(file)?)),
        None => None,
    };
    let plan = plan(
        &place,
        delivery,
        key,
        opts.name.as_deref(),
        pending::list(&place.pending),
    )?;
    print!("{}", plan.summary());
    refuse_name_loss(&plan, opts.allow_name_loss)?;
    if opts.dry_run {
        println!("dry run: nothing written");
        return Ok(());
    }
    let crt = write_pair(&plan)?;
    retire_requests(&place, &plan);
    println!(
        "installed: {} (pair {:?}); the running proxy serves it within about a second \
         (menshen certs --config {} shows it)",
        crt.display(),
        plan.name,
        config.display()
    );
    Ok(())
}

/// Refuses an install without files or with a `--name` that cannot be a file name.
fn check_flags(opts: &Options) -> Result<(), IntakeError> {
    if opts.files.is_empty() {
        return Err(IntakeError::Usage {
            flag: "FILE",
            reason: "name the files the CA delivered".into(),
        });
    }
    if let Some(name) = &opts.name {
        if !super::valid_name(name) {
            return Err(IntakeError::Usage {
                flag: "--name",
                reason: format!("{name:?} cannot be a file name"),
            });
        }
    }
    Ok(())
}

/// Everything the CA delivered, decoded from every file given.
fn read_delivery(opts: &Options) -> Result<Delivery, IntakeError> {
    let mut delivery = Delivery::default();
    let ask = |source: &str| password(opts.password_file.as_deref(), source);
    for file in &opts.files {
        decode_file(file, &ask, &mut delivery)?;
    }
    Ok(delivery)
}

/// Warns of each name the replaced pair serves and the new one does not; refuses the install
/// unless `--allow-name-loss`.
fn refuse_name_loss(plan: &Plan, allowed: bool) -> Result<(), IntakeError> {
    for host in &plan.lost {
        eprintln!(
            "warning: {host} is served by {} today and the new certificate does not cover it",
            plan.replaces
                .as_ref()
                .map_or(String::new(), |o| o.info.file.display().to_string())
        );
    }
    if plan.lost.is_empty() || allowed {
        return Ok(());
    }
    Err(IntakeError::Refused(format!(
        "refused: the new certificate would stop serving {}; ask the CA to add them, or, if \
         they are meant to go, remove them from their site in the config (a reload that \
         leaves a site's host without a certificate is refused) and install with \
         --allow-name-loss",
        plan.lost.join(", ")
    )))
}

/// Writes the planned pair as PEM (`write.rs`), warning of what it noticed; the certificate file.
fn write_pair(plan: &Plan) -> Result<PathBuf, IntakeError> {
    let chain: String = plan
        .served
        .key
        .cert
        .iter()
        .map(|c: &CertificateDer<'_>| pem_of("CERTIFICATE", c))
        .collect();
    let key_pem = match &plan.key {
        PrivateKeyDer::Pkcs1(k) => pem_of("RSA PRIVATE KEY", k.secret_pkcs1_der()),
        PrivateKeyDer::Sec1(k) => pem_of("EC PRIVATE KEY", k.secret_sec1_der()),
        PrivateKeyDer::Pkcs8(k) => pem_of("PRIVATE KEY", k.secret_pkcs8_der()),
        _ => {
            return Err(IntakeError::Refused(
                "the key is in a form menshen cannot write".into(),
            ))
        }
    };
    let old = plan
        .replaces
        .as_ref()
        .and_then(|o| Some((o.info.file.clone(), write::key_of(&o.info.file)?)));
    let (crt, warnings) = write::install(
        &plan.dir,
        &plan.name,
        &plan.served.info.serial,
        &chain,
        &key_pem,
        old,
    )?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    Ok(crt)
}

/// Retires the pending request the pair answers, whichever copy of its key was used.
fn retire_requests(place: &Place, plan: &Plan) {
    if let KeySource::Pending(p) = &plan.key_source {
        pending::done(p);
    }
    let spki = key_spki(&plan.key);
    for p in pending::list(&place.pending) {
        if spki.is_some() && key_spki(&p.key) == spki {
            pending::done(&p);
        }
    }
}
