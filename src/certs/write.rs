//! Puts a new pair in place so that the running proxy never sees a certificate with a key that
//! is not its own, not even after a crash: both files are written and synced in a new version
//! folder (`.menshen/NAME.SERIAL.TIME/`, hidden from the loader), then one rename of a symlink
//! `NAME -> .menshen/…` makes the pair appear, or replaces the previous version, at once. The
//! pair it replaces, when it lived elsewhere, is moved aside into `.menshen/` afterwards.

use std::ffi::OsStr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::pending::{sync_dir, write_new};
use super::IntakeError;
use crate::tls::layout;

/// Where versions and replaced pairs are kept, inside a certificates folder.
const VERSIONS: &str = ".menshen";

/// The files of a pair already in place: its certificate and key.
pub type OldPair = (PathBuf, PathBuf);

/// The key file of the served certificate `crt`, found as the loader pairs it.
pub fn key_of(crt: &Path) -> Option<PathBuf> {
    let dir = crt.parent()?;
    let files = crate::tls::files_in(dir).ok()?;
    let folder = dir.file_name()?.to_string_lossy().into_owned();
    [false, true]
        .into_iter()
        .flat_map(|sub| layout::scan(&files, &folder, sub).pairs)
        .find(|p| p.crt == crt)
        .map(|p| p.key)
}

fn unique() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}{:09}", now.as_secs(), now.subsec_nanos())
}

fn io<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> IntakeError + 'a {
    move |e| IntakeError::io(path, what, e)
}

/// Writes pair `name` (`chain` PEM, `key` PEM) into `dir` and moves `old` aside. Returns the
/// certificate file the proxy will load, and warnings about what could not be tidied.
pub fn install(
    dir: &Path,
    name: &str,
    serial: &str,
    chain: &str,
    key: &str,
    old: Option<OldPair>,
) -> Result<(PathBuf, Vec<String>), IntakeError> {
    let versions = dir.join(VERSIONS);
    let stamp = unique();
    let version = format!("{name}.{serial}.{stamp}");
    write_version(&versions, &version, name, chain, key)?;
    let dest = dir.join(name);
    let previous = std::fs::read_link(&dest).ok();
    swap_in(dir, name, &stamp, &PathBuf::from(VERSIONS).join(&version))?;
    let mut warnings = Vec::new();
    if let Some(old) = old.filter(|(c, _)| !c.starts_with(&dest)) {
        let aside = versions.join(format!("replaced-{name}.{stamp}"));
        warnings.extend(move_aside(&old, &aside).err());
        sync_dir(dir);
    }
    // Keep this version and the one it replaced (to roll back by hand); older ones go.
    let keep_previous = previous.and_then(|p| p.file_name().map(|n| n.to_owned()));
    prune_versions(&versions, name, &version, keep_previous.as_deref());
    Ok((dest.join(format!("{name}.crt")), warnings))
}

/// Writes and syncs the pair in its own new folder `versions/version`.
fn write_version(
    versions: &Path,
    version: &str,
    name: &str,
    chain: &str,
    key: &str,
) -> Result<(), IntakeError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(versions)
        .map_err(io(versions, "create"))?;
    let folder = versions.join(version);
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(&folder)
        .map_err(io(&folder, "create"))?;
    write_new(&folder.join(format!("{name}.key")), key.as_bytes(), 0o600)?;
    write_new(&folder.join(format!("{name}.crt")), chain.as_bytes(), 0o644)?;
    sync_dir(&folder);
    sync_dir(versions);
    Ok(())
}

/// Points `dir/name` at `target` (the new version) in one rename.
fn swap_in(dir: &Path, name: &str, stamp: &str, target: &Path) -> Result<(), IntakeError> {
    let dest = dir.join(name);
    let link = |at: &Path| std::os::unix::fs::symlink(target, at).map_err(io(at, "link"));
    match dest.symlink_metadata().ok() {
        // A symlink (an earlier install) or nothing: one rename swaps it in.
        None => {
            let tmp = dir.join(format!(".{name}.{stamp}.link"));
            link(&tmp)?;
            std::fs::rename(&tmp, &dest).map_err(io(&dest, "rename into place"))?;
        }
        Some(m) if m.file_type().is_symlink() => {
            let tmp = dir.join(format!(".{name}.{stamp}.link"));
            link(&tmp)?;
            std::fs::rename(&tmp, &dest).map_err(io(&dest, "rename into place"))?;
        }
        // A folder of its own (certbot's, a Secret's): the new pair serves beside it under a
        // second name, the folder moves aside, the new pair takes its name.
        Some(m) if m.is_dir() => {
            let beside = dir.join(format!("{name}.installing"));
            link(&beside)?;
            let aside = dir.join(VERSIONS).join(format!("replaced-{name}.{stamp}"));
            std::fs::rename(&dest, &aside).map_err(io(&dest, "move aside"))?;
            std::fs::rename(&beside, &dest).map_err(io(&dest, "rename into place"))?;
        }
        Some(_) => {
            return Err(IntakeError::File {
                file: dest,
                reason: "is a file where the pair's folder goes: move it away, or install under \
                         another --name"
                    .into(),
            })
        }
    }
    sync_dir(dir);
    Ok(())
}

/// Moves the replaced pair, which lived beside the new one, into `aside`: certificate first,
/// then its key. A warning when it could not.
fn move_aside((old_crt, old_key): &OldPair, aside: &Path) -> Result<(), String> {
    let moved = std::fs::create_dir_all(aside).and_then(|()| {
        for f in [old_crt, old_key] {
            let to = aside.join(f.file_name().unwrap_or_default());
            std::fs::rename(f, to)?;
        }
        Ok(())
    });
    moved.map_err(|e| {
        format!(
            "the replaced pair {} + {} could not be moved aside ({e}); remove it by hand",
            old_crt.display(),
            old_key.display()
        )
    })
}

/// Removes the versions of pair `name` but `version` and `keep`.
fn prune_versions(versions: &Path, name: &str, version: &str, keep: Option<&OsStr>) {
    let Ok(entries) = std::fs::read_dir(versions) else {
        return;
    };
    for entry in entries.flatten() {
        let n = entry.file_name();
        let text = n.to_string_lossy();
        let ours = text.rsplitn(3, '.').nth(2) == Some(name);
        if ours && n != version && Some(n.as_os_str()) != keep {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;
