//! What can stop a `certs` command: each names the file or flag, what is wrong and the fix.

use std::path::PathBuf;

use thiserror::Error;

/// Why a `certs request` or `certs install` did nothing.
#[derive(Debug, Error)]
pub enum IntakeError {
    /// The config cannot say where certificates go.
    #[error("{}: {reason}", config.display())]
    Config {
        /// Config file.
        config: PathBuf,
        /// What is missing, and the fix.
        reason: String,
    },
    /// A command-line value that cannot work.
    #[error("{flag}: {reason}")]
    Usage {
        /// The flag, e.g. `--hosts`.
        flag: &'static str,
        /// What is wrong, and the fix.
        reason: String,
    },
    /// A file that cannot be read, written or understood.
    #[error("{}: {reason}", file.display())]
    File {
        /// The file.
        file: PathBuf,
        /// What is wrong, and the fix.
        reason: String,
    },
    /// What was delivered may not be installed.
    #[error("{0}")]
    Refused(String),
}

impl IntakeError {
    /// A file error from an I/O error.
    pub fn io(file: &std::path::Path, what: &str, e: std::io::Error) -> Self {
        IntakeError::File {
            file: file.to_path_buf(),
            reason: format!("cannot {what}: {e}"),
        }
    }
}
