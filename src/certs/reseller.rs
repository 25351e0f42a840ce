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

/// An entry of a download: (entry name, content).
type Entry = (String, Vec<u8>);

/// The entries of the zip `bytes` (from `source`) that the server needs.
pub fn unzip(source: &str, bytes: &[u8]) -> Result<Picked, IntakeError> {
    let entries = read_entries(source, bytes)?;
    // The first server folder, in order of preference, that holds PEM or DER files.
    let pick = (0..3).find(|rank| {
        entries
            .iter()
            .any(|(n, _)| folder_rank(n) == *rank && wanted(n))
    });
    if let Some(rank) = pick {
        let entries = entries
            .into_iter()
            .filter(|(n, _)| folder_rank(n) == rank && wanted(n))
            .collect();
        return Ok(Picked {
            entries,
            passwords: Vec::new(),
        });
    }
    pfx_and_password(entries).ok_or_else(|| {
        bad(
            source,
            "holds no PEM, DER or PKCS#12 certificate (a Tomcat .jks is not read): ask the CA \
             for the nginx download"
                .into(),
        )
    })
}

fn bad(source: &str, reason: String) -> IntakeError {
    IntakeError::File {
        file: source.into(),
        reason,
    }
}

/// Every file of the archive no larger than a certificate could be.
fn read_entries(source: &str, bytes: &[u8]) -> Result<Vec<Entry>, IntakeError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| {
        bad(
            source,
            format!("not a readable zip ({e}): download it again"),
        )
    })?;
    if archive.len() > MAX_ENTRIES {
        return Err(bad(
            source,
            format!("{} entries: not a certificate download", archive.len()),
        ));
    }
    let mut entries = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| bad(source, format!("entry {i} is unreadable ({e})")))?;
        let name = entry.name().map(|n| n.into_owned()).unwrap_or_default();
        if entry.is_dir() || entry.size() > MAX_ENTRY_BYTES {
            continue;
        }
        let mut content = Vec::new();
        entry
            .by_ref()
            .take(MAX_ENTRY_BYTES)
            .read_to_end(&mut content)
            .map_err(|e| {
                bad(
                    source,
                    format!("{name}: cannot unpack ({e}): download it again"),
                )
            })?;
        entries.push((name, content));
    }
    Ok(entries)
}

/// The preference of the folder an entry is in: 0 an nginx folder, 1 an apache folder, 2
/// anywhere else, 3 IIS or Tomcat folders.
fn folder_rank(name: &str) -> u8 {
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
}

/// Whether the entry is a PEM or DER file.
fn wanted(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    WANTED.iter().any(|end| lower.ends_with(end))
}

/// The first `.pfx` (or `.p12`) of the download, with the `keystorePass.txt` beside it.
fn pfx_and_password(entries: Vec<Entry>) -> Option<Picked> {
    let name = entries
        .iter()
        .map(|(n, _)| n)
        .find(|n| {
            let lower = n.to_ascii_lowercase();
            lower.ends_with(".pfx") || lower.ends_with(".p12")
        })?
        .clone();
    let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
    let passwords = entries
        .iter()
        .filter(|(n, _)| {
            let in_dir = n.rsplit_once('/').map_or("", |(d, _)| d) == dir;
            in_dir && n.to_ascii_lowercase().ends_with("keystorepass.txt")
        })
        .map(|(_, text)| String::from_utf8_lossy(text).trim().to_owned())
        .collect();
    let entries = entries.into_iter().filter(|(n, _)| *n == name).collect();
    Some(Picked { entries, passwords })
}
