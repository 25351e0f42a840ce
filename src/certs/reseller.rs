//! Zip downloads in the layout of Chinese CA resellers: one folder per server (`Nginx/`,
//! `Apache/`, `IIS/`, `Tomcat/`), or the files of one server at the top. The PEM files of the
//! nginx folder are what menshen needs; then Apache's; then IIS's `.pfx` with the password in
//! `keystorePass.txt` beside it. Tomcat's `.jks` is never read.

use std::io::Read;

use super::IntakeError;

/// The entries of a download that the server needs, with PKCS#12 passwords found beside them.
#[derive(Debug, Default)]
pub struct Picked {
    /// (entry name, content).
    pub entries: Vec<(String, Vec<u8>)>,
    /// The content of `keystorePass.txt` beside a `.pfx`.
    pub passwords: Vec<String>,
}

/// Whether `bytes` is a zip archive.
pub fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

/// Entries larger than this are not certificates.
const MAX_ENTRY_BYTES: u64 = 1 << 20;
/// A download with more entries than this is not a certificate download.
const MAX_ENTRIES: usize = 256;

/// File endings read from a zip, PEM and DER forms.
const WANTED: &[&str] = &[".crt", ".pem", ".cer", ".der", ".key", ".p7b"];

/// The entries of the zip `bytes` (from `source`) that the server needs.
pub fn unzip(source: &str, bytes: &[u8]) -> Result<Picked, IntakeError> {
    let bad = |reason: String| IntakeError::File {
        file: source.into(),
        reason,
    };
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| bad(format!("not a readable zip ({e}): download it again")))?;
    if archive.len() > MAX_ENTRIES {
        return Err(bad(format!(
            "{} entries: not a certificate download",
            archive.len()
        )));
    }
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| bad(format!("entry {i} is unreadable ({e})")))?;
        let name = entry.name().map(|n| n.into_owned()).unwrap_or_default();
        if entry.is_dir() || entry.size() > MAX_ENTRY_BYTES {
            continue;
        }
        let mut content = Vec::new();
        entry
            .by_ref()
            .take(MAX_ENTRY_BYTES)
            .read_to_end(&mut content)
            .map_err(|e| bad(format!("{name}: cannot unpack ({e}): download it again")))?;
        entries.push((name, content));
    }
    // 0: an nginx folder, 1: an apache folder, 2: anywhere else, 3: IIS or Tomcat folders.
    let folder = |name: &str| {
        let dirs = name
            .rsplit_once('/')
            .map_or("", |(d, _)| d)
            .to_ascii_lowercase();
        let has = |s: &str| dirs.split('/').any(|d| d.contains(s));
        match () {
            () if has("nginx") => 0,
            () if has("apache") => 1,
            () if has("iis") || has("tomcat") => 3,
            () => 2,
        }
    };
    let wanted = |name: &str| {
        let lower = name.to_ascii_lowercase();
        WANTED.iter().any(|end| lower.ends_with(end))
    };
    // The first server folder, in order of preference, that holds PEM or DER files.
    let pick = (0..3).find(|rank| entries.iter().any(|(n, _)| folder(n) == *rank && wanted(n)));
    let mut picked = Picked::default();
    if let Some(rank) = pick {
        picked.entries = entries
            .into_iter()
            .filter(|(n, _)| folder(n) == rank && wanted(n))
            .collect();
        return Ok(picked);
    }
    let pfx = entries.iter().find(|(n, _)| {
        let lower = n.to_ascii_lowercase();
        lower.ends_with(".pfx") || lower.ends_with(".p12")
    });
    let Some((name, _)) = pfx.cloned() else {
        return Err(bad(
            "holds no PEM, DER or PKCS#12 certificate (a Tomcat .jks is not read): ask the \
             CA for the nginx download"
                .into(),
        ));
    };
    let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
    for (n, text) in &entries {
        let in_dir = n.rsplit_once('/').map_or("", |(d, _)| d) == dir;
        if in_dir && n.to_ascii_lowercase().ends_with("keystorepass.txt") {
            picked
                .passwords
                .push(String::from_utf8_lossy(text).trim().to_owned());
        }
    }
    picked.entries = entries.into_iter().filter(|(n, _)| *n == name).collect();
    Ok(picked)
}
