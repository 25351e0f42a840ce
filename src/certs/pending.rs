//! Keys waiting for their certificate: `pending/NAME.key` (mode 0600) and `pending/NAME.csr`,
//! written by `certs request`, taken by `certs install` when a delivered leaf matches one.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::IntakeError;

/// Creates `dir` (mode 0700) if it is missing.
fn ensure_dir(dir: &Path) -> Result<(), IntakeError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| IntakeError::io(dir, "create the pending folder", e))
}

/// Writes `contents` to a new file `path` with `mode`, synced to disk; never replaces one.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), IntakeError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| IntakeError::io(path, "create", e))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| IntakeError::io(path, "write", e))
}

/// Keeps a new request's key and CSR under `name`. Refuses to replace a pending one.
pub fn keep(dir: &Path, name: &str, key_pem: &str, csr_pem: &str) -> Result<PathBuf, IntakeError> {
    ensure_dir(dir)?;
    let key_file = dir.join(format!("{name}.key"));
    if key_file.exists() {
        return Err(IntakeError::Usage {
            flag: "--name",
            reason: format!(
                "a request named {name:?} is pending ({}): install its certificate first, remove \
                 that key if the request is abandoned, or choose another --name",
                key_file.display()
            ),
        });
    }
    write_new(&key_file, key_pem.as_bytes(), 0o600)?;
    let csr_file = dir.join(format!("{name}.csr"));
    let _ = std::fs::remove_file(&csr_file);
    write_new(&csr_file, csr_pem.as_bytes(), 0o644)?;
    sync_dir(dir);
    Ok(key_file)
}

/// Makes the directory entries in `dir` durable (renames and creations in it).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
