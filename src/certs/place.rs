//! Where the intake reads and writes, from the config: the certificates folder (the first of
//! `tls.certificates`), `pending/` beside it, the approved roots and `tls.intermediates`.

use std::path::{Path, PathBuf};

use super::IntakeError;
use crate::config::peek::tls_paths;

/// The folders of one config.
#[derive(Debug, Clone)]
pub struct Place {
    /// The config file.
    pub config: PathBuf,
    /// Every `tls.certificates` folder.
    pub dirs: Vec<PathBuf>,
    /// Where new pairs go: the first of `dirs`.
    pub certificates: PathBuf,
    /// Keys waiting for their certificate: `pending/` beside `certificates`.
    pub pending: PathBuf,
    /// `tls.approved_cas`.
    pub approved: Vec<PathBuf>,
    /// `tls.intermediates`, if set.
    pub intermediates: Option<PathBuf>,
}

impl Place {
    /// Reads the `[tls]` section of `config`.
    pub fn of(config: &Path) -> Result<Place, IntakeError> {
        let bad = |reason: String| IntakeError::Config {
            config: config.to_path_buf(),
            reason,
        };
        let tls = tls_paths(config).map_err(|errors| {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            bad(format!(
                "the config does not load:\n  {}",
                lines.join("\n  ")
            ))
        })?;
        let tls =
            tls.ok_or_else(|| bad("no [tls] section: certificates need tls.certificates".into()))?;
        let dirs = tls.certificates;
        let Some(certificates) = dirs.first().cloned() else {
            return Err(bad(
                "tls.certificates lists no folder: name the folder new certificates go to".into(),
            ));
        };
        let parent = certificates
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Ok(Place {
            config: config.to_path_buf(),
            pending: parent.join("pending"),
            approved: tls.approved,
            intermediates: tls.intermediates,
            dirs,
            certificates,
        })
    }
}
