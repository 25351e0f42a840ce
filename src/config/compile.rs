//! Compiles a [`FileConfig`] into a [`Snapshot`], the runtime model: everything the data path,
//! the admin endpoints and reload need, built once and typed. The file's structs stop here.
//!
//! On a reload the previous snapshot is passed in: certificate pairs that fail keep their last
//! good version, and upstreams whose section did not change are reused with their health state.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::file::{FileConfig, OcspSection, TlsSection};
use super::{
    cache, error_pages, notify, policy, process, relative_to, sites, upstreams, ConfigError, Errors,
};
use crate::route::Router;
use crate::snapshot::{CertPolicy, Snapshot};
use crate::tls::cert::unix_now;
use crate::tls::ocsp::OcspSettings;
use crate::tls::store::{CertLoad, CertSources};
use crate::tls::{ApprovedRoots, CertStore, TlsError};

/// A compiled snapshot and what the load noticed that does not stop it.
#[derive(Debug)]
pub struct Load {
    /// The new snapshot.
    pub snapshot: Snapshot,
    /// Certificate files that failed but whose last good version serves on.
    pub kept_previous: Vec<PathBuf>,
}

/// Reads and compiles the config at `path`. `previous` is the serving snapshot on a reload.
///
/// Fails with every configuration error found. Certificate pair problems are not errors here:
/// they are in `snapshot.cert_errors`, and `reload::judge` decides (left out and reported, unless
/// nothing could be served or `tls.strict` is set).
pub fn load(path: &Path, previous: Option<&Snapshot>) -> Result<Load, Vec<ConfigError>> {
    compile(path, parse(path)?, previous)
}

/// Reads and parses the config file (schema errors, unknown keys included).
pub(super) fn parse(path: &Path) -> Result<FileConfig, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError::Read {
            file: path.to_path_buf(),
            reason: e.to_string(),
        }]
    })?;
    let parse_error = |e: toml::de::Error| {
        vec![ConfigError::Parse {
            file: path.to_path_buf(),
            message: e.to_string().trim_end().to_owned(),
        }]
    };
    // Keys of older configs first: each gets its new name, rather than serde's unknown field.
    let mut errors = Errors::new(path);
    super::renamed::check(&text.parse().map_err(parse_error)?, &mut errors);
    if !errors.list.is_empty() {
        return Err(errors.list);
    }
    toml::from_str(&text).map_err(parse_error)
}

/// Compiles an already parsed config into the runtime model.
pub fn compile(
    path: &Path,
    file: FileConfig,
    previous: Option<&Snapshot>,
) -> Result<Load, Vec<ConfigError>> {
    let mut errors = Errors::new(path);
    let listeners = process::listeners(&file, &mut errors);
    let tls = tls(path, &file, previous, &mut errors);
    let (dns, resolver) = process::dns(&file, &mut errors);
    let upstreams = upstreams::compile(&file.upstreams, &dns, resolver, previous, &mut errors);
    let https_port = listeners.iter().find(|l| l.tls).map(|l| l.addr.port());
    let sites = sites::compile(
        &file.sites,
        &file.policy,
        https_port,
        &upstreams,
        &mut errors,
    );
    let previous_policy = previous.map(|p| &p.policy);
    let policy = policy::compile(
        &file.policy,
        file.tls.as_ref(),
        previous_policy,
        https_port,
        &mut errors,
    );
    let access_log = process::access_log(path, &file, &mut errors);
    let admin = process::admin(path, &file, &mut errors);
    let otel = file
        .otel
        .as_ref()
        .and_then(|o| process::otel(o, &mut errors));
    process::log(&file.log, &mut errors);
    let error_pages = error_pages::compile(&file.error_pages, "error_pages", &mut errors);
    let cache = cache::settings(path, &file.cache, &mut errors);
    if let Some(section) = &file.notify {
        notify::compile(section, &mut errors);
    }
    if !errors.list.is_empty() {
        // `check` reports everything at once: certificate problems too.
        let cert_errors = tls.load.errors.into_iter().map(ConfigError::Tls);
        errors.list.extend(cert_errors);
        return Err(errors.list);
    }
    let router = Router::new(sites);
    let snapshot = Snapshot {
        config_path: path.to_path_buf(),
        roots: tls.roots,
        certs: tls.load.store,
        ocsp: tls.ocsp,
        cert_errors: tls.load.errors,
        cert_sources: tls.sources,
        approved_paths: tls.approved_paths,
        cert_policy: tls.policy,
        counters: crate::observe::metrics::RequestCounters::new(&router),
        router,
        upstreams,
        policy,
        error_pages,
        cache,
        access_log,
        otel,
        admin,
        listener_names: listeners
            .iter()
            .map(|l| (l.addr.port(), Arc::from(l.name.as_str())))
            .collect(),
        listeners,
        server: process::server(path, &file),
        reload: process::reload(&file),
        dns,
        loaded_at: unix_now(),
    };
    Ok(Load {
        snapshot,
        kept_previous: tls.load.kept_previous,
    })
}

/// What `[tls]` compiles to: roots, certificate pairs and where they come from.
struct Tls {
    approved_paths: Vec<PathBuf>,
    sources: CertSources,
    roots: ApprovedRoots,
    load: CertLoad,
    policy: CertPolicy,
    ocsp: OcspSettings,
}

fn tls(
    path: &Path,
    file: &FileConfig,
    previous: Option<&Snapshot>,
    errors: &mut Errors<'_>,
) -> Tls {
    let Some(section) = &file.tls else {
        return Tls {
            approved_paths: Vec::new(),
            sources: CertSources::default(),
            roots: ApprovedRoots::default(),
            load: CertLoad::default(),
            policy: CertPolicy::default(),
            ocsp: OcspSettings::default(),
        };
    };
    let approved_paths: Vec<PathBuf> = section
        .approved_cas
        .iter()
        .map(|p| relative_to(path, p))
        .collect();
    let sources = cert_sources(path, section);
    let (roots, load) = load_tls(section, &approved_paths, &sources, previous, errors);
    Tls {
        approved_paths,
        sources,
        roots,
        load,
        policy: CertPolicy {
            expiry_warning_days: section.expiry_warning_days(),
            strict: section.strict,
        },
        ocsp: ocsp(&section.ocsp, errors),
    }
}

/// `[tls.ocsp]`: the proxy must be an http:// URL ureq can use.
fn ocsp(section: &OcspSection, errors: &mut Errors<'_>) -> OcspSettings {
    if let Some(proxy) = &section.proxy {
        let usable = proxy.starts_with("http://") && ureq::Proxy::new(proxy).is_ok();
        if !usable {
            errors.invalid(
                "tls.ocsp.proxy",
                format!(
                    "{proxy:?} is not an HTTP proxy URL (expected like \"http://10.0.0.1:3128\")"
                ),
            );
        }
    }
    for (key, d) in [
        ("tls.ocsp.timeout", section.timeout),
        ("tls.ocsp.retry", section.retry),
    ] {
        if d.is_zero() {
            errors.invalid(key, "must be above 0s (e.g. \"10s\")");
        }
    }
    OcspSettings {
        fetch: section.fetch,
        proxy: section.proxy.clone(),
        timeout: section.timeout,
        retry: section.retry,
    }
}

/// Only the TLS part of the config at `path`: approved roots and certificate pairs, with the
/// expiry warning threshold. For `menshen certs`, which should work even if routing is broken.
pub fn load_certs(path: &Path) -> Result<(CertLoad, u32), Vec<ConfigError>> {
    let file = parse(path)?;
    let Some(tls) = &file.tls else {
        return Ok((CertLoad::default(), 0));
    };
    let mut errors = Errors::new(path);
    let approved: Vec<PathBuf> = tls
        .approved_cas
        .iter()
        .map(|p| relative_to(path, p))
        .collect();
    let (_, load) = load_tls(tls, &approved, &cert_sources(path, tls), None, &mut errors);
    if errors.list.is_empty() {
        Ok((load, tls.expiry_warning_days()))
    } else {
        Err(errors.list)
    }
}

fn cert_sources(path: &Path, tls: &TlsSection) -> CertSources {
    CertSources {
        dirs: tls
            .certificates
            .iter()
            .map(|p| relative_to(path, p))
            .collect(),
        pairs: tls
            .pairs
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    relative_to(path, &p.cert),
                    relative_to(path, &p.key),
                )
            })
            .collect(),
    }
}

fn load_tls(
    tls: &TlsSection,
    approved_paths: &[PathBuf],
    sources: &CertSources,
    previous: Option<&Snapshot>,
    errors: &mut Errors<'_>,
) -> (ApprovedRoots, CertLoad) {
    if sources.dirs.is_empty() && sources.pairs.is_empty() {
        errors.invalid(
            "tls.certificates",
            "lists no directory (and there are no [[tls.pairs]]); name the directories holding \
             NAME.crt + NAME.key pairs",
        );
    }
    let roots = match ApprovedRoots::load(approved_paths) {
        Ok(roots) => roots,
        Err(list) => {
            errors.list.extend(list.into_iter().map(ConfigError::Tls));
            return Default::default();
        }
    };
    let mut load = CertStore::load(
        sources,
        tls.default_certificate.as_deref(),
        &roots,
        previous.map(|p| &p.certs),
        unix_now(),
    );
    if let Some(name) = &tls.default_certificate {
        let exists = sources
            .dirs
            .iter()
            .any(|d| crate::tls::layout::pair_names(d).contains(name))
            || sources.pairs.iter().any(|(n, _, _)| n == name);
        if !exists {
            load.errors
                .retain(|e| !matches!(e, TlsError::UnknownDefault(_)));
            errors.invalid(
                "tls.default_certificate",
                format!("{name:?} names no certificate pair ({name}.crt + {name}.key) in tls.certificates"),
            );
        }
    }
    if load.store.certs().is_empty() && load.errors.is_empty() {
        errors.invalid(
            "tls.certificates",
            format!(
                "no NAME.crt + NAME.key pair found in {}",
                sources
                    .dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    (roots, load)
}
