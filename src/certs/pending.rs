//! Keys waiting for their certificate: `pending/NAME.key` (mode 0600) and `pending/NAME.csr`,
//! written by `certs request`, taken by `certs install` when a delivered leaf matches one.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustls::pki_types::PrivateKeyDer;

use super::IntakeError;

/// One pending request.
#[derive(Debug)]
pub struct Pending {
    /// Pair name it was requested for.
    pub name: String,
    /// `pending/NAME.key`.
    pub key_file: PathBuf,
    /// The key.
    pub key: PrivateKeyDer<'static>,
}

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

/// Every pending request in `dir` (none when it does not exist).
pub fn list(dir: &Path) -> Vec<Pending> {
    let Ok(files) = crate::tls::files_in(dir) else {
        return Vec::new();
    };
    files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "key"))
        .filter_map(|key_file| {
            let bytes = std::fs::read(&key_file).ok()?;
            let key = rustls_pemfile::private_key(&mut bytes.as_slice()).ok()??;
            let name = key_file.file_stem()?.to_string_lossy().into_owned();
            Some(Pending {
                name,
                key_file,
                key,
            })
        })
        .collect()
}

/// Removes a request once its certificate is installed.
pub fn done(p: &Pending) {
    let _ = std::fs::remove_file(&p.key_file);
    let _ = std::fs::remove_file(p.key_file.with_extension("csr"));
    if let Some(dir) = p.key_file.parent() {
        sync_dir(dir);
    }
}

/// Makes the directory entries in `dir` durable (renames and creations in it).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
