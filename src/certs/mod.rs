//! `menshen certs request` and `menshen certs install`: the intake of certificates bought by hand.
//!
//! `request` makes a key that waits in `pending/` and the CSR to send the CA; `install` takes
//! what the CA delivered (`decode`, `reseller` for zip downloads), finds the leaf and its key,
//! completes and checks the chain as serving would (`plan`), and writes the pair so the running
//! proxy's watcher picks it up whole (`write`). `place` finds the folders from the config.
//! Nothing in the proxy imports this module.

mod decode;
mod error;
mod install;
mod pending;
mod place;
mod plan;
mod request;
mod reseller;
mod write;

use std::path::{Path, PathBuf};

use clap::Subcommand;

pub use error::IntakeError;

/// What `menshen certs` does besides showing the table.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Make a private key and a CSR for HOSTS; the key waits in pending/ (beside the
    /// certificates folder) for the certificate, and never leaves this machine.
    Request {
        /// Host names for the certificate, comma-separated (a.example.cn,*.example.cn).
        #[arg(long, value_delimiter = ',', required = true)]
        hosts: Vec<String>,
        /// An RSA key of this many bits (2048 or 3072) instead of ECDSA P-256.
        #[arg(long, value_name = "BITS")]
        rsa: Option<u32>,
        /// Pair name (default: the first host, `*` as `wildcard`).
        #[arg(long)]
        name: Option<String>,
    },
    /// Install what the CA delivered (PEM bundles in any order, DER, .p7b, .pfx/.p12, a
    /// reseller's .zip): the leaf is matched to a pending key (or --key), the chain ordered,
    /// completed from tls.intermediates and checked as serving would; then written whole.
    Install {
        /// The delivered files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The private key, when it is not pending or in the delivery.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Pair name (default: the pair it replaces, or the request's name).
        #[arg(long)]
        name: Option<String>,
        /// Install even when the new certificate does not cover every name the replaced one
        /// serves.
        #[arg(long)]
        allow_name_loss: bool,
        /// Print what would be installed and replaced; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// File holding the PKCS#12 password (else MENSHEN_PFX_PASSWORD, else a prompt).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

/// Runs `action` for the config at `config`; the exit code.
pub fn run(config: &Path, action: Action) -> i32 {
    let result = match action {
        Action::Request { hosts, rsa, name } => request::run(config, &hosts, rsa, name.as_deref()),
        Action::Install {
            files,
            key,
            name,
            allow_name_loss,
            dry_run,
            password_file,
        } => install::run(
            config,
            install::Options {
                files,
                key,
                name,
                allow_name_loss,
                dry_run,
                password_file,
            },
        ),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// A pair name from a host: `*.example.cn` is `wildcard.example.cn`.
fn name_for(host: &str) -> String {
    host.replace('*', "wildcard")
}

/// Whether `name` can be a file name in the certificates folder.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}
