//! Compiles a [`FileConfig`] into a [`Snapshot`]: everything the data path needs, built once.
//!
//! On a reload the previous snapshot is passed in: certificate pairs that fail keep their last
//! good version, and upstreams whose section did not change are reused with their health state.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::file::{FileConfig, TlsSection};
use super::{relative_to, ConfigError, Errors};
use crate::admin::AdminConfig;
use crate::observe::access_log::AccessLogConfig;
use crate::route::dns::Dns;
use crate::route::Router;
use crate::snapshot::Snapshot;
use crate::tls::cert::unix_now;
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
pub fn parse(path: &Path) -> Result<FileConfig, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError::Read {
            file: path.to_path_buf(),
            reason: e.to_string(),
        }]
    })?;
    toml::from_str(&text).map_err(|e| {
        vec![ConfigError::Parse {
            file: path.to_path_buf(),
            message: e.to_string().trim_end().to_owned(),
        }]
    })
}

/// Compiles an already parsed config.
pub fn compile(
    path: &Path,
    file: FileConfig,
    previous: Option<&Snapshot>,
) -> Result<Load, Vec<ConfigError>> {
    let mut errors = Errors::new(path);
    check_listeners(&file, &mut errors);

    let approved_paths: Vec<PathBuf> = file.tls.as_ref().map_or_else(Vec::new, |t| {
        t.approved_cas
            .iter()
            .map(|p| relative_to(path, p))
            .collect()
    });
    let cert_sources = file
        .tls
        .as_ref()
        .map_or_else(CertSources::default, |t| cert_sources(path, t));
    let (roots, cert_load) = match &file.tls {
        Some(tls) => load_tls(tls, &approved_paths, &cert_sources, previous, &mut errors),
        None => Default::default(),
    };

    let dns = build_dns(&file, &mut errors);
    let upstreams = super::upstreams::compile(&file, dns, previous, &mut errors);
    let sites = super::sites::compile(&file.sites, &upstreams, &mut errors);
    let https_port = file
        .listeners
        .iter()
        .filter(|l| l.tls)
        .find_map(|l| l.addr.parse::<SocketAddr>().ok())
        .map(|a| a.port());
    let policy =
        crate::policy::compile(&file, previous.map(|p| &p.policy), https_port, &mut errors);
    let access_log = access_log(path, &file, &mut errors);
    let admin = admin(path, &file, &mut errors);
    if !matches!(file.log.format.as_str(), "text" | "json") {
        errors.invalid(
            "log.format",
            format!("{:?} is not \"text\" or \"json\"", file.log.format),
        );
    }
    if tracing_subscriber::EnvFilter::try_new(&file.log.level).is_err() {
        errors.invalid(
            "log.level",
            format!("{:?} is not a log level (e.g. \"info\")", file.log.level),
        );
    }
    if let Some(notify) = &file.notify {
        for (key, message) in crate::observe::notify::check(notify) {
            errors.invalid(key, message);
        }
    }
    let listener_names = file
        .listeners
        .iter()
        .filter_map(|l| {
            Some((
                l.addr.parse::<SocketAddr>().ok()?.port(),
                Arc::from(l.name.as_str()),
            ))
        })
        .collect();

    if !errors.list.is_empty() {
        // `check` reports everything at once: certificate problems too.
        let cert_errors = cert_load.errors.into_iter().map(ConfigError::Tls);
        errors.list.extend(cert_errors);
        return Err(errors.list);
    }
    let router = Router::new(sites);
    let snapshot = Snapshot {
        config_path: path.to_path_buf(),
        roots,
        certs: cert_load.store,
        cert_errors: cert_load.errors,
        cert_sources,
        approved_paths,
        counters: crate::observe::metrics::RequestCounters::new(&router),
        router,
        upstreams,
        policy,
        access_log,
        admin,
        listener_names,
        loaded_at: unix_now(),
        file,
    };
    Ok(Load {
        snapshot,
        kept_previous: cert_load.kept_previous,
    })
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
        Ok((load, tls.expiry_warning_days))
    } else {
        Err(errors.list)
    }
}

fn check_listeners(file: &FileConfig, errors: &mut Errors<'_>) {
    if file.listeners.is_empty() {
        errors.invalid(
            "listeners",
            "no [[listeners]]; add one, e.g. { name = \"https\", addr = \"0.0.0.0:443\", tls = true }",
        );
    }
    let mut names = HashSet::new();
    let mut addrs = HashSet::new();
    for (i, l) in file.listeners.iter().enumerate() {
        let key = format!("listeners[{i}]");
        if !names.insert(l.name.as_str()) {
            errors.invalid(&key, format!("listener name {:?} is used twice", l.name));
        }
        match l.addr.parse::<SocketAddr>() {
            Ok(addr) if !addrs.insert(addr) => {
                errors.invalid(&key, format!("addr {:?} is used twice", l.addr))
            }
            Ok(_) => {}
            Err(_) => errors.invalid(
                format!("{key}.addr"),
                format!("{:?} is not ip:port (e.g. \"0.0.0.0:443\")", l.addr),
            ),
        }
        if l.tls && file.tls.is_none() {
            errors.invalid(
                &key,
                format!(
                    "listener {:?} has tls = true but there is no [tls] section",
                    l.name
                ),
            );
        }
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

fn admin(path: &Path, file: &FileConfig, errors: &mut Errors<'_>) -> Option<AdminConfig> {
    let section = file.admin.as_ref()?;
    let Ok(addr) = section.addr.parse::<SocketAddr>() else {
        errors.invalid(
            "admin.addr",
            format!(
                "{:?} is not ip:port (e.g. \"127.0.0.1:9901\")",
                section.addr
            ),
        );
        return None;
    };
    if file
        .listeners
        .iter()
        .any(|l| l.addr.parse::<SocketAddr>().ok() == Some(addr))
    {
        errors.invalid("admin.addr", format!("{addr} is also a proxy listener"));
    }
    Some(AdminConfig {
        addr,
        reload_token_file: section
            .reload_token_file
            .as_deref()
            .map(|f| relative_to(path, f)),
    })
}

fn access_log(path: &Path, file: &FileConfig, errors: &mut Errors<'_>) -> Option<AccessLogConfig> {
    let section = file.access_log.as_ref()?;
    let retention = crate::config::log::retention(section, errors);
    if section.max_file_bytes == 0 || section.buffer_lines == 0 {
        errors.invalid(
            "access_log",
            "max_file_bytes and buffer_lines must be above 0",
        );
    }
    let log_path = relative_to(path, &section.path);
    Some(AccessLogConfig {
        audit_path: Some(match &section.audit_file {
            Some(f) => relative_to(path, f),
            None => crate::observe::audit::default_audit_path(&log_path),
        }),
        path: log_path,
        retention,
        chain_key: crate::config::log::chain_key(path, section, errors),
        shipping: crate::config::log::shipping(path, section, errors),
        max_file_bytes: section.max_file_bytes,
        buffer_lines: section.buffer_lines,
    })
}

fn build_dns(file: &FileConfig, errors: &mut Errors<'_>) -> Option<Arc<Dns>> {
    let d = &file.dns;
    let mut servers = Vec::new();
    for (i, r) in d.resolvers.iter().enumerate() {
        match r.parse::<SocketAddr>() {
            Ok(addr) => servers.push(addr),
            Err(_) => errors.invalid(
                format!("dns.resolvers[{i}]"),
                format!("{r:?} is not ip:port (e.g. \"223.5.5.5:53\")"),
            ),
        }
    }
    if d.min_ttl_seconds > d.max_ttl_seconds {
        errors.invalid(
            "dns.min_ttl_seconds",
            format!(
                "{} is above dns.max_ttl_seconds ({})",
                d.min_ttl_seconds, d.max_ttl_seconds
            ),
        );
    }
    let needs_dns = file.upstreams.iter().any(|u| {
        u.backends.iter().any(|b| {
            super::upstreams::backend_addr(b)
                .parse::<SocketAddr>()
                .is_err()
        })
    });
    if !needs_dns {
        return None;
    }
    match Dns::new(
        &servers,
        Duration::from_millis(d.timeout_ms),
        Duration::from_secs(d.min_ttl_seconds),
        Duration::from_secs(d.max_ttl_seconds),
    ) {
        Ok(dns) => Some(Arc::new(dns)),
        Err(e) => {
            errors.invalid("dns.resolvers", e);
            None
        }
    }
}
