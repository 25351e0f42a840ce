//! Where the intake reads and writes, from the config: the certificates folder (the first of
//! `tls.certificates`), `pending/` beside it, the approved roots and `tls.intermediates`.

use std::path::{Path, PathBuf};

use super::IntakeError;
use crate::config::compile::parse;
use crate::config::relative_to;

/// The folders of one config.
#[derive(Debug, Clone)]
pub struct Place {
    /// Keys waiting for their certificate: `pending/` beside the first `tls.certificates`.
    pub pending: PathBuf,
}

impl Place {
    /// Reads the `[tls]` section of `config`.
    pub fn of(config: &Path) -> Result<Place, IntakeError> {
        let bad = |reason: String| IntakeError::Config {
            config: config.to_path_buf(),
            reason,
        };
        let file = parse(config).map_err(|errors| {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            bad(format!(
                "the config does not load:\n  {}",
                lines.join("\n  ")
            ))
        })?;
        let tls = file
            .tls
            .ok_or_else(|| bad("no [tls] section: certificates need tls.certificates".into()))?;
        let dirs: Vec<PathBuf> = tls
            .certificates
            .iter()
            .map(|d| relative_to(config, d))
            .collect();
        let Some(certificates) = dirs.first().cloned() else {
            return Err(bad(
                "tls.certificates lists no folder: name the folder new certificates go to".into(),
            ));
        };
        let parent = certificates
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Ok(Place {
            pending: parent.join("pending"),
        })
    }
}
