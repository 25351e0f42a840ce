//! The `menshen` command: parse arguments, load the configuration, run or report.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use menshen::{certs, cli, cli_logs, config, observe, reload, server};

// Per-request allocations (headers, log lines) are small and short-lived; mimalloc's thread-local
// free lists serve them cheaper than glibc's malloc (docs/performance.md).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Edge reverse proxy serving only certificates from approved CAs.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML).
    #[arg(
        long,
        short,
        global = true,
        default_value = "/etc/menshen/menshen.toml"
    )]
    config: PathBuf,
    /// Take over the listening sockets of a running menshen (zero-downtime upgrade).
    #[arg(long, global = true)]
    upgrade: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run,
    /// Judge the configuration, every certificate and every backend hostname as a reload would;
    /// exit 0 only if nothing would be refused or left out.
    Check,
    /// Show the certificates (hosts, issuer, approved root, expiry and status), or request
    /// and install one.
    Certs {
        #[command(subcommand)]
        action: Option<certs::Action>,
    },
    /// Probe the running proxy's admin /healthz (for container health checks).
    Healthz,
    /// Verify chained logs, or make the key they are chained with.
    Logs {
        #[command(subcommand)]
        action: cli_logs::Action,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command.unwrap_or(Command::Run) {
        Command::Check => ExitCode::from(cli::check(&args.config) as u8),
        Command::Certs { action: None } => ExitCode::from(cli::certs(&args.config) as u8),
        Command::Certs {
            action: Some(action),
        } => ExitCode::from(certs::run(&args.config, action) as u8),
        Command::Healthz => ExitCode::from(cli::healthz(&args.config) as u8),
        Command::Logs { action } => ExitCode::from(cli_logs::run(&args.config, action) as u8),
        Command::Run => {
            // The log settings live in the config: peek at them before the full load, so that
            // load errors are reported in the configured format.
            let (log, notify) = config::peek::process_log(&args.config);
            observe::logging::init(&log, notify.as_ref());
            let snapshot = match reload::first_load(&args.config) {
                Ok(s) => s,
                Err(errors) => {
                    for e in &errors {
                        tracing::error!("{e}");
                    }
                    tracing::error!("menshen did not start: {} problem(s)", errors.len());
                    return ExitCode::from(1);
                }
            };
            for e in &snapshot.cert_errors {
                tracing::error!(
                    notify = observe::notify::NotifyEvent::Rejected.mark(),
                    "certificate rejected, it is not served (the other certificates are; \
                     tls.strict = true would refuse to start): {e}"
                );
            }
            let opts = server::RunOptions {
                upgrade: args.upgrade,
            };
            match server::run(snapshot, opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("menshen stopped: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
