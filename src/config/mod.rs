//! Configuration: the TOML schema (`file*.rs`), its compilation into the runtime model, the
//! [`crate::snapshot::Snapshot`] (`compile`, then `process`, `sites`, `upstreams`, `policy`,
//! `notify` section by section), and the errors a user can get.
//!
//! Nothing outside this module reads TOML or sees the schema's structs (`tests/structure.rs`
//! checks that no other module names them); `peek` serves what is read before the full load. Errors name the file, the key and the fix; loading
//! collects every error rather than stopping at the first.

mod cache;
pub mod compile;
mod compression;
pub mod duration;
mod error_pages;
pub mod file;
mod file_cache;
mod file_compression;
mod file_error_pages;
mod file_notify;
mod file_otel;
mod file_policy;
mod file_retries;
mod file_ship;
mod file_tls;
mod file_upstreams;
mod headers;
mod log;
mod notify;
pub mod peek;
mod policy;
mod process;
mod renamed;
mod retries;
mod sites;
mod upstreams;

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::tls::TlsError;

pub use compile::{load, Load};

/// A problem with the configuration or what it points at.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {reason}")]
    Read {
        /// Config file.
        file: PathBuf,
        /// OS error.
        reason: String,
    },
    /// Not valid TOML, or not the schema (unknown key, wrong type).
    #[error("{file}: {message}")]
    Parse {
        /// Config file.
        file: PathBuf,
        /// Parser message, with line and key.
        message: String,
    },
    /// A value that parses but cannot work.
    #[error("{}: {key}: {message}", file.display())]
    Invalid {
        /// Config file.
        file: PathBuf,
        /// Where in the file, e.g. `site "shop": routes[0].upstream`.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A certificate or approved root problem.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Collects errors while compiling, each tagged with the config file.
#[derive(Debug)]
pub(crate) struct Errors<'a> {
    file: &'a Path,
    pub(crate) list: Vec<ConfigError>,
}

impl<'a> Errors<'a> {
    pub(crate) fn new(file: &'a Path) -> Self {
        Self {
            file,
            list: Vec::new(),
        }
    }

    /// Records an invalid value at `key`.
    pub(crate) fn invalid(&mut self, key: impl fmt::Display, message: impl fmt::Display) {
        self.list.push(ConfigError::Invalid {
            file: self.file.to_path_buf(),
            key: key.to_string(),
            message: message.to_string(),
        });
    }

    pub(crate) fn file(&self) -> &Path {
        self.file
    }
}

/// Compiles a `{ name = value }` header table, naming each bad entry under `key`.
pub(crate) fn header_list(
    table: &std::collections::BTreeMap<String, String>,
    key: &str,
    errors: &mut Errors<'_>,
) -> Vec<(http::HeaderName, http::HeaderValue)> {
    let mut headers = Vec::with_capacity(table.len());
    for (name, value) in table {
        match (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => headers.push((n, v)),
            _ => errors.invalid(key, format!("{name:?}: {value:?} is not a valid header")),
        }
    }
    headers
}

/// Resolves `path` relative to the directory of the config file `config`.
pub fn relative_to(config: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    config.parent().unwrap_or(Path::new(".")).join(p)
}
