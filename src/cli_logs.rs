//! `menshen logs`: make a chain key, verify a directory of chained logs (see `observe::verify`).

use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::observe::chain::ChainKey;

/// What `menshen logs` does.
#[derive(Subcommand, Debug)]
pub enum Action {
    /// Check every log file and manifest in DIR: name the first line altered, removed or moved
    /// in each file, and any file truncated or missing from the sequence. Exit 1 on any finding.
    Verify {
        /// Directory of the logs (access log, admin audit log, rotated files, manifests).
        dir: PathBuf,
        /// The chain key file (default: access_log.chain_key_file of --config).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Write a new random chain key to FILE (refuses to overwrite one).
    Key {
        /// Where to write it (mode 0600).
        file: PathBuf,
    },
}

/// Runs `menshen logs ACTION`; returns the exit code.
pub fn run(config: &Path, action: Action) -> i32 {
    match action {
        Action::Key { file } => key(&file),
        Action::Verify { dir, key } => verify(config, &dir, key),
    }
}

fn key(file: &Path) -> i32 {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = match ChainKey::generate() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    match written {
        Ok(()) => {
            println!(
                "{}: new chain key; keep a copy where logs are verified (without it no one can \
                 tell an altered log from a genuine one)",
                file.display()
            );
            0
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!(
                "error: {}: exists; a new key would not verify the logs chained with this one \
                 (remove it first if that is what you want)",
                file.display()
            );
            1
        }
        Err(e) => {
            eprintln!("error: {}: cannot write: {e}", file.display());
            1
        }
    }
}

fn verify(config: &Path, dir: &Path, key: Option<PathBuf>) -> i32 {
    let key_file = match key {
        Some(k) => k,
        None => match crate::config::peek::chain_key_file(config) {
            Ok(file) => match file {
                Some(key) => key,
                None => {
                    eprintln!(
                        "error: {}: no [access_log] section to take the chain key from; pass \
                         --key FILE",
                        config.display()
                    );
                    return 2;
                }
            },
            Err(errors) => {
                crate::cli::print_errors(&errors);
                eprintln!("(or pass the chain key with --key FILE)");
                return 2;
            }
        },
    };
    let key = match ChainKey::load(&key_file) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let report = match crate::observe::verify::verify(dir, &key) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}: cannot read: {e}", dir.display());
            return 2;
        }
    };
    for f in &report.findings {
        println!("{f}");
    }
    let verdict = if report.findings.is_empty() {
        "ok".to_owned()
    } else {
        format!("{} finding(s)", report.findings.len())
    };
    println!(
        "{}: {verdict}: {} file(s), {} line(s) checked",
        dir.display(),
        report.files,
        report.lines
    );
    if report.files == 0 {
        eprintln!("error: {}: no chained log files in it", dir.display());
        return 1;
    }
    i32::from(!report.findings.is_empty())
}
