//! Parts of the config read before, or instead of, the full load: the process log (so that
//! load errors come out in its format), the admin address (`menshen healthz`), the chain key
//! (`menshen logs verify`) and the TLS folders (`menshen certs`, which should work even when
//! routing is broken).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::compile::parse;
use super::{relative_to, ConfigError, Errors};
use crate::observe::logging::LogSettings;
use crate::observe::notify::NotifyConfig;

/// The process log's settings and the webhooks; the defaults when the file does not load (the
/// full load then reports why).
pub fn process_log(path: &Path) -> (LogSettings, Option<NotifyConfig>) {
    let Ok(file) = parse(path) else {
        return (LogSettings::default(), None);
    };
    let mut errors = Errors::new(path);
    let log = super::process::log(&file.log, &mut errors);
    let notify = file
        .notify
        .as_ref()
        .map(|n| super::notify::compile(n, &mut errors));
    (log, notify)
}

/// `admin.addr`; `None` without an `[admin]` section.
pub fn admin_addr(path: &Path) -> Result<Option<SocketAddr>, Vec<ConfigError>> {
    let file = parse(path)?;
    let mut errors = Errors::new(path);
    let admin = super::process::admin(path, &file, &mut errors);
    match errors.list.is_empty() {
        true => Ok(admin.map(|a| a.addr)),
        false => Err(errors.list),
    }
}

/// `access_log.chain_key_file`, resolved beside the config (`menshen logs verify`); `None`
/// without an `[access_log]` section.
pub fn chain_key_file(path: &Path) -> Result<Option<PathBuf>, Vec<ConfigError>> {
    let file = parse(path)?;
    Ok(file
        .access_log
        .map(|log| relative_to(path, &log.chain_key_file)))
}

/// The folders `[tls]` names, resolved beside the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// `tls.certificates`.
    pub certificates: Vec<PathBuf>,
    /// `tls.approved_cas`.
    pub approved: Vec<PathBuf>,
    /// `tls.intermediates`.
    pub intermediates: Option<PathBuf>,
}

/// The TLS folders; `None` without a `[tls]` section.
pub fn tls_paths(path: &Path) -> Result<Option<TlsPaths>, Vec<ConfigError>> {
    let Some(tls) = parse(path)?.tls else {
        return Ok(None);
    };
    let resolve = |list: &[String]| list.iter().map(|p| relative_to(path, p)).collect();
    Ok(Some(TlsPaths {
        certificates: resolve(&tls.certificates),
        approved: resolve(&tls.approved_cas),
        intermediates: tls.intermediates.as_deref().map(|d| relative_to(path, d)),
    }))
}
